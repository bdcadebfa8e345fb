module github.com/berth-vm/berth/ci/bench/diskargs

go 1.26.0

require (
	github.com/berth-vm/berth/common v0.0.0
	github.com/berth-vm/berth/vmm v0.0.0
)

require golang.org/x/sys v0.49.0 // indirect

replace (
	github.com/berth-vm/berth/common => ../../../common
	github.com/berth-vm/berth/vmm => ../../../vmm
)
