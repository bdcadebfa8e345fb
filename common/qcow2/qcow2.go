// Package qcow2 parses the header of a qcow2 image (docs/interop/qcow2.txt in
// QEMU): the fields that say which other files QEMU would open through it (a
// backing file, an external data file), whether it is encrypted, and whether
// it is marked corrupt. It reads bytes; it never opens what a header names.
// image-fetch (init/imgcheck) refuses a base whose header names another file;
// vmm checks that the overlay's chain is the one image-fetch made.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/berth-vm/berth/common/fsutil"
)

// Magic starts every qcow2 file.
const Magic = "QFI\xfb"

// MaxHeaderBytes is how much of a file Parse looks at: the header, its
// extensions and the backing file's name are in the first cluster, and QEMU
// makes that at least 64 KiB unless asked for less.
const MaxHeaderBytes = 64 << 10

// maxBackingNameLen is QEMU's own limit on a backing file's name.
const maxBackingNameLen = 1023

// Incompatible feature bits (version 3).
const (
	IncompatDirty    = 1 << 0
	IncompatCorrupt  = 1 << 1
	IncompatDataFile = 1 << 2
	IncompatCompress = 1 << 3
	IncompatExtL2    = 1 << 4
	// IncompatKnown are the bits QEMU knows; another one set means QEMU
	// would refuse the image.
	IncompatKnown = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompress | IncompatExtL2
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extDataFile      = 0x44415441
	extBackingFormat = 0xe2792aca
	extCryptoHeader  = 0x0537be77
)

// ErrNotQcow2 is a file that does not start with Magic.
var ErrNotQcow2 = errors.New("not a qcow2 file")

// Header is what a qcow2 header says about the files QEMU opens through it.
type Header struct {
	Version uint32 // 2 or 3
	// BackingFileOffset and BackingFileSize are the header's fields as
	// written; a backing file is named when either is set (HasBackingFile).
	BackingFileOffset uint64
	BackingFileSize   uint32
	BackingFile       string // the name they point at; "" when not both are set
	CryptMethod       uint32 // 0 none, 1 AES, 2 LUKS
	// IncompatibleFeatures is the version 3 bit field (0 in version 2).
	IncompatibleFeatures uint64
	// The header extensions found.
	BackingFormatExt bool   // the backing format extension
	BackingFormat    string // its value; "" if none
	DataFileExt      bool   // the external data file name extension
	CryptoHeaderExt  bool   // the encryption header extension (LUKS)
}

// HasBackingFile reports whether the header names a backing file at all.
func (h Header) HasBackingFile() bool { return h.BackingFileOffset != 0 || h.BackingFileSize != 0 }

// HasDataFile reports an external data file: the feature bit or the extension.
func (h Header) HasDataFile() bool {
	return h.IncompatibleFeatures&IncompatDataFile != 0 || h.DataFileExt
}

// Encrypted reports an encryption method or the encryption header extension.
func (h Header) Encrypted() bool { return h.CryptMethod != 0 || h.CryptoHeaderExt }

// Corrupt reports the corrupt bit (QEMU opens such an image read-only at most).
func (h Header) Corrupt() bool { return h.IncompatibleFeatures&IncompatCorrupt != 0 }

// UnknownIncompatible are the incompatible feature bits QEMU does not know.
func (h Header) UnknownIncompatible() uint64 { return h.IncompatibleFeatures &^ uint64(IncompatKnown) }

// IsQcow2 reports whether b starts with the qcow2 magic.
func IsQcow2(b []byte) bool { return len(b) >= len(Magic) && string(b[:len(Magic)]) == Magic }

// Parse parses the first bytes of a qcow2 file (up to MaxHeaderBytes; more
// are ignored). A file without the magic is ErrNotQcow2; a header that is
// truncated, of an unknown version, or whose extensions or backing file name
// run past the bytes given is an error. It never panics, whatever the bytes.
func Parse(b []byte) (Header, error) {
	if !IsQcow2(b) {
		return Header{}, ErrNotQcow2
	}
	b = b[:min(len(b), MaxHeaderBytes)]
	be := binary.BigEndian
	if len(b) < 72 {
		return Header{}, errors.New("qcow2 header truncated")
	}
	h := Header{
		Version:           be.Uint32(b[4:]),
		BackingFileOffset: be.Uint64(b[8:]),
		BackingFileSize:   be.Uint32(b[16:]),
		CryptMethod:       be.Uint32(b[32:]),
	}
	if h.Version != 2 && h.Version != 3 {
		return Header{}, fmt.Errorf("qcow2 version %d: only 2 and 3 exist", h.Version)
	}
	if off, size := h.BackingFileOffset, uint64(h.BackingFileSize); off != 0 && size != 0 {
		if size > maxBackingNameLen {
			return Header{}, fmt.Errorf("qcow2 backing file name of %d bytes", size)
		}
		if off > uint64(len(b)) || size > uint64(len(b))-off {
			return Header{}, fmt.Errorf("qcow2 backing file name at offset %d, past the header", off)
		}
		h.BackingFile = string(b[off : off+size])
	}
	extStart := uint64(72)
	if h.Version == 3 {
		if len(b) < 104 {
			return Header{}, errors.New("qcow2 v3 header truncated")
		}
		h.IncompatibleFeatures = be.Uint64(b[72:])
		extStart = uint64(be.Uint32(b[100:]))
		if extStart < 104 {
			return Header{}, fmt.Errorf("qcow2 header length %d too small", extStart)
		}
	}
	// Header extensions: type u32, length u32, data padded to 8 bytes; as
	// QEMU does, one whose data runs past the header is refused.
	for off := extStart; ; {
		if off > uint64(len(b)) || uint64(len(b))-off < 8 {
			return Header{}, errors.New("qcow2 header extensions run past the header")
		}
		typ, n := be.Uint32(b[off:]), uint64(be.Uint32(b[off+4:]))
		data := off + 8
		if n > uint64(len(b))-data {
			return Header{}, errors.New("qcow2 header extension runs past the header")
		}
		switch typ {
		case extEnd:
			return h, nil
		case extBackingFormat:
			h.BackingFormatExt, h.BackingFormat = true, string(b[data:data+n])
		case extDataFile:
			h.DataFileExt = true
		case extCryptoHeader:
			h.CryptoHeaderExt = true
		}
		off = data + (n+7)&^7
	}
}

// Read parses the header of the file at path without following a symlink
// there and without blocking on a FIFO (fsutil.Open): the path is in a shared
// volume.
func Read(path string) (Header, error) {
	f, err := fsutil.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	buf := make([]byte, MaxHeaderBytes)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Header{}, fmt.Errorf("qcow2 header: %w", err)
	}
	return Parse(buf[:n])
}
