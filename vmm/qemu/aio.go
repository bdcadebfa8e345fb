package qemu

// The I/O back end (-drive aio=) per volume mode: the one place it is chosen.
// `make bench` measures it (ci/bench/disk.sh: fio in the guest, Berth against
// plain QEMU on the same kind of disk; docs/benchmarks.md, "Data disks") and
// flags a measurement that disagrees with these. io_uring is never a default:
// containerd 2.0's RuntimeDefault seccomp profile, which the chart sets,
// refuses its system calls.
const (
	// AIOFilesystem is for a disk that is a file on a filesystem volume (the
	// pet overlay, a Filesystem data disk): QEMU's thread pool, which works
	// with every cache mode and every filesystem (native AIO blocks on a
	// file's metadata updates, and needs O_DIRECT).
	AIOFilesystem = "threads"
	// AIOBlock is for a Block data disk (the volume's device itself) with a
	// cache mode that bypasses the host page cache (none, directsync). The
	// thread pool: measured ahead of native AIO on a raw block device in every
	// run (2026-12-01, TCG, loop devices; KubeVirt chooses native there, so
	// measure again on a KVM host before changing it).
	AIOBlock = "threads"
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
