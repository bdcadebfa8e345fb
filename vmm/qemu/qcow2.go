package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/berth-vm/berth/common/fsutil"
)

// Header is what vmm reads from a qcow2 header: enough to check the chain
// QEMU will open is the one image-fetch made.
type Header struct {
	Version       uint32
	BackingFile   string // "" if none
	BackingFormat string // the backing_fmt header extension; "" if none
	Encrypted     bool
	DataFile      bool // an external data file (incompatible feature bit or header extension)
}

const (
	qcowMagic         = "QFI\xfb"
	extEnd            = 0x00000000
	extBackingFormat  = 0xe2792aca
	extDataFile       = 0x44415441
	incompatDataFile  = 1 << 2
	maxHeaderBytes    = 64 << 10
	maxBackingNameLen = 1023 // QEMU's own limit
)

// ReadHeader reads a qcow2 header from path without following a symlink there
// and without blocking on a FIFO (fsutil.Open): the path is in a shared volume.
// A file that is not qcow2 is an error.
func ReadHeader(path string) (Header, error) {
	f, err := fsutil.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	buf := make([]byte, maxHeaderBytes)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return Header{}, fmt.Errorf("qcow2 header: %w", err)
	}
	return ParseHeader(buf[:n])
}

// ParseHeader parses the first bytes of a qcow2 file (up to 64 KiB).
func ParseHeader(h []byte) (Header, error) {
	be := binary.BigEndian
	if len(h) < 72 || string(h[:4]) != qcowMagic {
		return Header{}, errors.New("not a qcow2 file")
	}
	hd := Header{Version: be.Uint32(h[4:])}
	if hd.Version != 2 && hd.Version != 3 {
		return Header{}, fmt.Errorf("qcow2 version %d: only 2 and 3 exist", hd.Version)
	}
	hd.Encrypted = be.Uint32(h[32:]) != 0
	if off, size := be.Uint64(h[8:]), be.Uint32(h[16:]); off != 0 && size != 0 {
		if size > maxBackingNameLen {
			return Header{}, fmt.Errorf("qcow2 backing file name of %d bytes", size)
		}
		if off+uint64(size) > uint64(len(h)) {
			return Header{}, fmt.Errorf("qcow2 backing file name at offset %d, past the header", off)
		}
		hd.BackingFile = string(h[off : off+uint64(size)])
	}
	extStart := uint64(72)
	if hd.Version == 3 {
		if len(h) < 104 {
			return Header{}, errors.New("qcow2 v3 header truncated")
		}
		hd.DataFile = be.Uint64(h[72:])&incompatDataFile != 0
		extStart = uint64(be.Uint32(h[100:]))
		if extStart < 104 {
			return Header{}, fmt.Errorf("qcow2 header length %d too small", extStart)
		}
	}
	for off := extStart; ; {
		if off+8 > uint64(len(h)) {
			return Header{}, errors.New("qcow2 header extensions run past the header")
		}
		typ, n := be.Uint32(h[off:]), uint64(be.Uint32(h[off+4:]))
		if off+8+n > uint64(len(h)) {
			return Header{}, errors.New("qcow2 header extension runs past the header")
		}
		switch typ {
		case extEnd:
			return hd, nil
		case extBackingFormat:
			hd.BackingFormat = string(h[off+8 : off+8+n])
		case extDataFile:
			hd.DataFile = true
		}
		off += 8 + (n+7)&^7
	}
}

// ResolveBacking resolves a backing file name as QEMU does: relative to the
// overlay's directory.
func ResolveBacking(overlay, backing string) string {
	if filepath.IsAbs(backing) {
		return backing
	}
	return filepath.Join(filepath.Dir(overlay), backing)
}
