module github.com/berth-vm/berth/ci/bench/rtt

go 1.22
