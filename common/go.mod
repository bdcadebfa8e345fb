module github.com/berth-vm/berth/common

go 1.26

require golang.org/x/sys v0.47.0
