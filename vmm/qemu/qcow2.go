package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BackingFile returns the backing file name recorded in a qcow2 header ("" if
// none). It reads only the header: QEMU itself opens the chain.
func BackingFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return "", fmt.Errorf("qcow2 header: %w", err)
	}
	if string(h[:4]) != "QFI\xfb" {
		return "", errors.New("not a qcow2 file")
	}
	off := binary.BigEndian.Uint64(h[8:16])
	size := binary.BigEndian.Uint32(h[16:20])
	if off == 0 || size == 0 {
		return "", nil
	}
	if size > 1023 {
		return "", fmt.Errorf("qcow2 backing file name of %d bytes", size)
	}
	name := make([]byte, size)
	if _, err := f.ReadAt(name, int64(off)); err != nil {
		return "", fmt.Errorf("qcow2 backing file name: %w", err)
	}
	return string(name), nil
}

// ResolveBacking resolves a backing file name as QEMU does: relative to the
// overlay's directory.
func ResolveBacking(overlay, backing string) string {
	if filepath.IsAbs(backing) {
		return backing
	}
	return filepath.Join(filepath.Dir(overlay), backing)
}
