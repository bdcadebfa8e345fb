package qcow2

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/stagetest"
)

// TestReadRealImages reads headers qemu-img made and checks each field the
// stages decide on.
func TestReadRealImages(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", p("base.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", p("v2.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", p("base.qcow2"), p("backed.qcow2"))
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "rel.raw", "-u", p("relative.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+p("data.raw"), p("datafile.qcow2"), "4M")
	// AES, not LUKS: qemu-img takes seconds to time LUKS's key derivation
	// (the LUKS header extension is in TestParseTable).
	stagetest.QemuImg(t, "create", "-q", "--object", "secret,id=s0,data=pass", "-f", "qcow2",
		"-o", "encrypt.format=aes,encrypt.key-secret=s0", p("aes.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "raw", p("disk.raw"), "4M")

	tests := []struct {
		file    string
		want    Header // the fields compared below
		dataExt bool
		err     string
	}{
		{file: "base.qcow2", want: Header{Version: 3}},
		{file: "v2.qcow2", want: Header{Version: 2}},
		{file: "backed.qcow2", want: Header{Version: 3, BackingFile: p("base.qcow2"), BackingFormat: "qcow2", BackingFormatExt: true}},
		{file: "relative.qcow2", want: Header{Version: 3, BackingFile: "rel.raw", BackingFormat: "raw", BackingFormatExt: true}},
		{file: "datafile.qcow2", want: Header{Version: 3, IncompatibleFeatures: IncompatDataFile, DataFileExt: true}},
		{file: "aes.qcow2", want: Header{Version: 3, CryptMethod: 1}},
		{file: "disk.raw", err: ErrNotQcow2.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			h, err := Read(p(tt.file))
			if !parsed(t, err, tt.err) {
				return
			}
			got := h
			got.BackingFileOffset, got.BackingFileSize = 0, 0
			if got != tt.want {
				t.Errorf("header %+v, want %+v", got, tt.want)
			}
			if h.HasBackingFile() != (tt.want.BackingFile != "") {
				t.Errorf("HasBackingFile = %v", h.HasBackingFile())
			}
			if h.HasDataFile() != (tt.file == "datafile.qcow2") || h.Encrypted() != (tt.file == "aes.qcow2") {
				t.Errorf("HasDataFile %v, Encrypted %v", h.HasDataFile(), h.Encrypted())
			}
		})
	}
}

// parsed fails t unless err is what was wanted: an error holding want, or
// none when want is "". It reports whether there is a header to look at.
func parsed(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatal(err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("err = %v, want %q", err, want)
	}
	return want == ""
}

// TestReadRefusesLinks: Read opens no symlink and never blocks on a FIFO.
func TestReadRefusesLinks(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "base.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", img, "1M")
	link, fifo := filepath.Join(dir, "link"), filepath.Join(dir, "fifo")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, fifo} {
		if _, err := Read(p); err == nil {
			t.Errorf("Read(%s) read through", filepath.Base(p))
		}
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(empty); !errors.Is(err, ErrNotQcow2) {
		t.Errorf("empty file: %v, want ErrNotQcow2", err)
	}
}

// header builds a v3 header of 104 bytes followed by the given extensions
// (each type, then data) and the end extension, padded to 512 bytes.
func header(version uint32, exts ...any) []byte {
	be := binary.BigEndian
	b := make([]byte, 104, 512)
	copy(b, Magic)
	be.PutUint32(b[4:], version)
	be.PutUint32(b[100:], 104)
	for i := 0; i+1 < len(exts); i += 2 {
		data := []byte(exts[i+1].(string))
		b = be.AppendUint32(b, exts[i].(uint32))
		b = be.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	b = append(b, make([]byte, 8)...) // end
	return append(b, make([]byte, 512-len(b))...)
}

func TestParseTable(t *testing.T) {
	be := binary.BigEndian
	set := func(b []byte, f func(b []byte)) []byte { c := append([]byte(nil), b...); f(c); return c }
	v3 := header(3)
	tests := []struct {
		name  string
		in    []byte
		err   string // "" = parses
		check func(Header) bool
	}{
		{"plain v3", v3, "", func(h Header) bool { return h == Header{Version: 3} }},
		{"not qcow2", make([]byte, 512), "not a qcow2 file", nil},
		{"magic only", []byte(Magic), "qcow2 header truncated", nil},
		{"version 4", set(v3, func(b []byte) { be.PutUint32(b[4:], 4) }), "qcow2 version 4", nil},
		{"v3 truncated", v3[:80], "qcow2 v3 header truncated", nil},
		{"header length 72", set(v3, func(b []byte) { be.PutUint32(b[100:], 72) }), "header length 72 too small", nil},
		{"header length past the end", set(v3, func(b []byte) { be.PutUint32(b[100:], 1<<20) }), "run past the header", nil},
		{"no end extension", v3[:104], "run past the header", nil},
		{"extension data past the end", set(v3, func(b []byte) { be.PutUint32(b[104:], 1); be.PutUint32(b[108:], 1<<30) }), "extension runs past", nil},
		{"backing name", set(v3, func(b []byte) { be.PutUint64(b[8:], 200); be.PutUint32(b[16:], 3); copy(b[200:], "abc") }), "",
			func(h Header) bool { return h.BackingFile == "abc" && h.HasBackingFile() }},
		{"backing offset alone", set(v3, func(b []byte) { be.PutUint64(b[8:], 200) }), "",
			func(h Header) bool { return h.BackingFile == "" && h.HasBackingFile() }},
		{"backing name past the header", set(v3, func(b []byte) { be.PutUint64(b[8:], 510); be.PutUint32(b[16:], 3) }), "past the header", nil},
		{"backing offset huge", set(v3, func(b []byte) { be.PutUint64(b[8:], ^uint64(0)); be.PutUint32(b[16:], 8) }), "past the header", nil},
		{"backing name too long", set(v3, func(b []byte) { be.PutUint64(b[8:], 200); be.PutUint32(b[16:], 1024) }), "1024 bytes", nil},
		{"backing format", header(3, uint32(extBackingFormat), "raw"), "",
			func(h Header) bool { return h.BackingFormatExt && h.BackingFormat == "raw" }},
		{"empty backing format", header(3, uint32(extBackingFormat), ""), "",
			func(h Header) bool { return h.BackingFormatExt && h.BackingFormat == "" }},
		{"data file extension", header(3, uint32(extDataFile), "d.raw"), "", func(h Header) bool { return h.DataFileExt && h.HasDataFile() }},
		{"crypto extension", header(3, uint32(extCryptoHeader), "12345678"), "", func(h Header) bool { return h.Encrypted() && h.CryptMethod == 0 }},
		{"unknown extension skipped", header(3, uint32(0x12345678), "x", uint32(extBackingFormat), "qcow2"), "",
			func(h Header) bool { return h.BackingFormat == "qcow2" }},
		{"corrupt and unknown bits", set(v3, func(b []byte) { be.PutUint64(b[72:], IncompatCorrupt|1<<40) }), "",
			func(h Header) bool { return h.Corrupt() && h.UnknownIncompatible() == 1<<40 && !h.HasDataFile() }},
		{"encrypted", set(v3, func(b []byte) { be.PutUint32(b[32:], 1) }), "", func(h Header) bool { return h.Encrypted() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Parse(tt.in)
			if !parsed(t, err, tt.err) {
				return
			}
			if !tt.check(h) {
				t.Errorf("header %+v", h)
			}
		})
	}
}

// FuzzParse: the parser never panics on any bytes, and what it returns is
// what the bytes say: a backing file name is the one at the header's offset,
// an accepted header has the magic and a known version.
func FuzzParse(f *testing.F) {
	f.Add([]byte(Magic + "\x00\x00\x00\x03"))
	f.Add(header(3))
	f.Add(header(2))
	f.Add(header(3, uint32(extBackingFormat), "qcow2", uint32(extDataFile), "x"))
	dir := f.TempDir()
	for i, args := range [][]string{
		{"-o", "compat=1.1"}, {"-o", "compat=0.10"}, {"-o", "data_file=" + filepath.Join(dir, "d.raw")},
		{"-o", "compression_type=zstd"}, {"-F", "raw", "-u", "-b", "/images/base.raw"},
	} {
		p := filepath.Join(dir, "s"+string(rune('0'+i))+".qcow2")
		stagetest.QemuImg(f, append(append([]string{"create", "-q", "-f", "qcow2"}, args...), p, "1M")...)
		b, _ := os.ReadFile(p)
		f.Add(b[:min(len(b), 4096)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			return
		}
		be := binary.BigEndian
		if !IsQcow2(b) || (h.Version != 2 && h.Version != 3) {
			t.Fatalf("accepted %+v", h)
		}
		if h.BackingFileOffset != be.Uint64(b[8:]) || h.BackingFileSize != be.Uint32(b[16:]) {
			t.Fatalf("backing fields %d %d", h.BackingFileOffset, h.BackingFileSize)
		}
		if h.BackingFile != "" && h.BackingFile != string(b[h.BackingFileOffset:h.BackingFileOffset+uint64(h.BackingFileSize)]) {
			t.Fatalf("backing file %q is not the bytes at its offset", h.BackingFile)
		}
		if h.Version == 3 && h.IncompatibleFeatures != be.Uint64(b[72:]) {
			t.Fatalf("incompatible features %#x", h.IncompatibleFeatures)
		}
	})
}
