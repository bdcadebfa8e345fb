package qemu

// The I/O back end (-drive aio=) per volume mode: the one place it is chosen.
// `make bench` measures it (fio in the guest, Berth against plain QEMU on the
// same file; docs/benchmarks.md) and may change these.
const (
	// AIOFilesystem is for a disk that is a file on a filesystem volume (the
	// pet overlay, a Filesystem data disk): QEMU's thread pool, which works
	// with every cache mode and every filesystem (native AIO blocks on a
	// file's metadata updates, and needs O_DIRECT).
	AIOFilesystem = "threads"
	// AIOBlock is for a Block data disk (the volume's device itself) with a
	// cache mode that bypasses the host page cache (none, directsync): Linux
	// native AIO, the usual choice for a raw device. io_uring is left out
	// until it is measured here.
	AIOBlock = "native"
)

// AIO is the aio= of a disk: AIOBlock for a block device opened with O_DIRECT
// (native AIO needs cache.direct=on: cache none or directsync), else
// AIOFilesystem.
func AIO(block bool, cache string) string {
	if block && (cache == "none" || cache == "directsync") {
		return AIOBlock
	}
	return AIOFilesystem
}
