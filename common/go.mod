module github.com/berth-vm/berth/common

go 1.26
