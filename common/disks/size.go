package disks

// ClusterSize is the qcow2 cluster size Berth's images use (qemu-img's default).
const ClusterSize = 64 << 10

// FullAllocation is the most a disk file of virtual size bytes takes on its
// volume once the guest has written every block: the data itself and, for
// qcow2 (64 KiB clusters, 16-bit refcounts), the header, L1 and L2 tables and
// the refcount table and blocks, as `qemu-img measure` counts them for a fully
// allocated image. A raw file takes its size.
func FullAllocation(format string, size uint64) uint64 {
	if format == "raw" {
		return size
	}
	const c = ClusterSize
	clusters := ceilDiv(size, c)
	l2 := ceilDiv(clusters*8, c) // one 8-byte entry per data cluster
	l1 := ceilDiv(l2*8, c)       // one 8-byte entry per L2 table
	meta := 1 + l1 + l2          // the header cluster, then the tables
	// Refcount blocks (2 bytes per cluster) cover every cluster, themselves and
	// the refcount table included; iterate to the fixed point.
	var blocks, table uint64
	for {
		total := clusters + meta + blocks + table
		nb := ceilDiv(total*2, c)
		nt := ceilDiv(nb*8, c)
		if nb == blocks && nt == table {
			break
		}
		blocks, table = nb, nt
	}
	return (clusters + meta + blocks + table) * c
}

// Room says whether a volume holds a disk file at full allocation: avail is
// what the volume still gives the disk's owner (statfs f_bavail × f_frsize:
// not the blocks a filesystem keeps for root, as ext4's 5 %), used is what the
// file takes now (st_blocks × 512) and need its FullAllocation.
func Room(avail, used, need uint64) bool { return avail+used >= need }

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }
