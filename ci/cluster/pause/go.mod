module github.com/berth-vm/berth/ci/cluster/pause

go 1.26
