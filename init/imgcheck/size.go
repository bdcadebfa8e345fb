package imgcheck

// MaxOverlaySize is the largest virtual size of a qcow2 overlay qemu-img
// creates with its default 64 KiB clusters: 2^51 bytes (2 PiB). Measured with
// qemu-img 7.2: `qemu-img create -f qcow2 x 2251799813685248` works, 512 bytes
// more fail with "The image size is too large for file format 'qcow2'". Image
// formats allow larger images (a qcow2 with 2 MiB clusters can be 100 PiB), but
// no overlay can be made on one, so such a base is useless to Berth.
const MaxOverlaySize uint64 = 1 << 51

// CheckOverlaySize refuses a base whose virtual size no overlay can hold.
func CheckOverlaySize(path string, img Image) error {
	if img.VirtualSize > MaxOverlaySize {
		return refused(path, "virtual size %d bytes is more than a qcow2 overlay can hold (%d bytes, 2 PiB): no pet disk can be made on it", img.VirtualSize, MaxOverlaySize)
	}
	return nil
}
