module github.com/berth-vm/berth/hostile

go 1.26

require github.com/berth-vm/berth/common v0.0.0

require golang.org/x/sys v0.47.0 // indirect

replace github.com/berth-vm/berth/common => ../common
