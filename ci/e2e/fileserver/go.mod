module github.com/berth-vm/berth/ci/e2e/fileserver

go 1.26
