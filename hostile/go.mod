module github.com/berth-vm/berth/hostile

go 1.26

require github.com/berth-vm/berth/common v0.0.0

replace github.com/berth-vm/berth/common => ../common
