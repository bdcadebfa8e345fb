// Package imgcheck decides whether a downloaded file is a base image QEMU may
// open safely: a self-contained qcow2 or raw image. A qcow2 with a backing
// file or an external data file, an encrypted image, or another format (vmdk
// descriptors name extent files, for one) would make QEMU open files other than
// the image, or fail at boot; all of these are refused.
//
// The format is decided from the file's header by this package, never by
// qemu-img's probing: qemu-img info is then run with an explicit -f, after the
// header was checked not to name another file, and its JSON is validated again
// (the idea of lima-vm/lima pkg/qemu/imgutil).
package imgcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/qcow2"
	"github.com/berth-vm/berth/init/qemuimg"
)

// Formats accepted for a base image.
const (
	QCOW2 = "qcow2"
	Raw   = "raw"
)

// Image is what was learnt about an accepted image.
type Image struct {
	Format      string // QCOW2 or Raw
	VirtualSize uint64 // bytes the guest sees
}

// RefusedError says why an image is not acceptable as a base. Retrying the
// same file does not help.
type RefusedError struct {
	Path   string
	Reason string
	// NotAnImage: the file is no disk image at all (empty, not whole sectors, an
	// HTML page), or a qcow2 whose tables point past its end or that qemu-img
	// check finds corrupt (a truncated download): likely an error page or a cut
	// body served instead of the image, which a later download may not be.
	// Otherwise the file is a disk image refused for what it is (a backing file,
	// another format, encryption, ...), whoever downloads it.
	NotAnImage bool
}

// errNotImage marks SniffFormat's refusals of files that are no disk image at all.
var errNotImage = errors.New("not a disk image")

func (e *RefusedError) Error() string {
	return fmt.Sprintf("image %s refused: %s", e.Path, e.Reason)
}

func refused(path, format string, args ...any) error {
	return &RefusedError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// Check decides the format from the header, refuses what names other files,
// then validates `qemu-img info -f <format> --output=json` (bounded by timeout).
func Check(ctx context.Context, path string, timeout time.Duration) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("check image: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return Image{}, fmt.Errorf("check image: %w", err)
	}
	hdr := make([]byte, 64<<10)
	n, err := io.ReadFull(f, hdr)
	f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Image{}, fmt.Errorf("check image %s: read header: %w", path, err)
	}
	hdr = hdr[:n]

	format, err := SniffFormat(hdr, fi.Size())
	if err != nil {
		return Image{}, &RefusedError{Path: path, Reason: err.Error(), NotAnImage: errors.Is(err, errNotImage)}
	}
	out, err := Info(ctx, path, format, timeout)
	if err != nil {
		return Image{}, err
	}
	img, err := CheckInfo(out, format)
	if err != nil {
		return Image{}, &RefusedError{Path: path, Reason: err.Error()}
	}
	if format == Raw && img.VirtualSize != uint64(fi.Size()) {
		return Image{}, refused(path, "raw image: qemu-img sees %d bytes, the file has %d", img.VirtualSize, fi.Size())
	}
	if format == QCOW2 {
		if err := CheckQcow2Consistency(ctx, path, timeout); err != nil {
			return Image{}, err
		}
	}
	return img, nil
}

// checkReport is the part of `qemu-img check --output=json` that is used.
type checkReport struct {
	Corruptions int64 `json:"corruptions"`
	Leaks       int64 `json:"leaks"`
	CheckErrors int64 `json:"check-errors"`
}

// CheckQcow2Consistency runs `qemu-img check -f qcow2 --output=json
// --force-share path` (bounded by timeout): every L1/L2 table, refcount table
// and block and every data cluster must lie inside the file and be counted
// right. The header and qemu-img info only read the front of the file, so a
// qcow2 cut short (a server that sent a short Content-Length and exactly that
// many bytes) passes them; this check reads all the metadata and does not.
// (image-end-offset is not compared with the file's size: it is rounded up
// to a cluster, and qemu-img check already counts every region that runs a
// cluster or more past the end as a corruption.)
//
// Leaked clusters alone (allocated, used by nothing: wasted space, harmless
// for a read-only base) are accepted. Corruptions, check errors, or an end
// offset past the file are a *RefusedError with NotAnImage set (a damaged or
// truncated copy; another download may be whole). A qemu-img that cannot run
// or does not answer within timeout is a plain error.
func CheckQcow2Consistency(ctx context.Context, path string, timeout time.Duration) error {
	out, err := qemuimg.Run(ctx, timeout, "check", "-f", QCOW2, "--output=json", "--force-share", path)
	var ee *qemuimg.ExitError
	if err != nil && !errors.As(err, &ee) {
		return err
	}
	firstLine := func() string {
		l, _, _ := strings.Cut(out.Stderr, "\n")
		return l
	}
	// Exit status (qemu-img(1)): 0 consistent, 1 check not completed (an
	// error), 2 corrupted, 3 leaks only, 63 checks not supported.
	code := 0
	if ee != nil {
		code = ee.Code
	}
	var rep checkReport
	if jerr := json.Unmarshal(out.Stdout, &rep); jerr != nil {
		if code == 0 || code == 3 {
			return fmt.Errorf("qemu-img check %s: output: %w", path, jerr)
		}
		// qemu-img could not open or read the image: the image's fault.
		return &RefusedError{Path: path, NotAnImage: true, Reason: fmt.Sprintf("qemu-img check -f qcow2 (exit %d): %s", code, firstLine())}
	}
	switch {
	case rep.Corruptions > 0 || code == 2:
		return &RefusedError{Path: path, NotAnImage: true, Reason: fmt.Sprintf(
			"qemu-img check finds %d corruptions (%s): the qcow2 is truncated or damaged", rep.Corruptions, firstLine())}
	case rep.CheckErrors > 0 || code == 1:
		return &RefusedError{Path: path, NotAnImage: true, Reason: fmt.Sprintf(
			"qemu-img check could not read the whole qcow2 (%d check errors: %s): truncated or damaged", rep.CheckErrors, firstLine())}
	case code != 0 && code != 3:
		return fmt.Errorf("qemu-img check -f qcow2 %s: exit %d: %s", path, code, firstLine())
	}
	return nil
}

// Info runs `qemu-img info -f format --output=json --force-share path` with a
// timeout and returns its stdout. --force-share: a base in a shared cache may
// be open by another VM's QEMU (read-only); info only reads.
func Info(ctx context.Context, path, format string, timeout time.Duration) ([]byte, error) {
	out, err := qemuimg.Run(ctx, timeout, "info", "-f", format, "--output=json", "--force-share", path)
	var ee *qemuimg.ExitError
	switch {
	case errors.As(err, &ee):
		// qemu-img ran and could not open the image: the image's fault.
		return nil, refused(path, "qemu-img info -f %s: %s", format, ee.Stderr)
	case err != nil:
		return nil, err
	}
	return out.Stdout, nil
}

// foreign magics: formats QEMU would probe and open, refused here by name.
var foreign = []struct {
	off   int
	magic string
	name  string
}{
	{0, "KDMV", "vmdk"},
	{0, "# Disk DescriptorFile", "vmdk descriptor (names extent files)"},
	{0, "COWD", "vmdk (ESX)"},
	{64, "\x7f\x10\xda\xbe", "vdi"},
	{0, "vhdxfile", "vhdx"},
	{0, "conectix", "vpc (vhd)"},
	{0, "QED\x00", "qed"},
	{0, "LUKS\xba\xbe", "luks (encrypted)"},
	{0, "WithoutFreeSpace", "parallels"},
	{0, "WithouFreSpacExt", "parallels"},
	{0, "Bochs Virtual HD Image", "bochs"},
	{0, "#!/bin/sh\n#V2.0 Format", "cloop"},
	{0, "OOOM", "qcow (version 1)"},
	{0, "\x1f\x8b", "gzip-compressed file (decompress it, or point IMG_SOURCE at the uncompressed image)"},
	{0, "\xfd7zXZ\x00", "xz-compressed file (decompress it, or point IMG_SOURCE at the uncompressed image)"},
	{0, "\x28\xb5\x2f\xfd", "zstd-compressed file (decompress it, or point IMG_SOURCE at the uncompressed image)"},
	{0, "BZh", "bzip2-compressed file (decompress it, or point IMG_SOURCE at the uncompressed image)"},
	{0, "PK\x03\x04", "zip archive"},
}

// SniffFormat decides the format from the file's first bytes (up to 64 KiB)
// and its size. A qcow2 header is parsed and refused when it names a backing
// file or an external data file, is encrypted, corrupt, or has features QEMU
// does not know. A file that is another disk format, a text or HTML page, or
// whose size is not whole 512-byte sectors is refused. Anything else is raw.
func SniffFormat(hdr []byte, size int64) (string, error) {
	if qcow2.IsQcow2(hdr) {
		return QCOW2, checkQcow2Header(hdr)
	}
	for _, m := range foreign {
		if len(hdr) >= m.off+len(m.magic) && string(hdr[m.off:m.off+len(m.magic)]) == m.magic {
			return "", fmt.Errorf("format %s: only qcow2 and raw are accepted (convert it: qemu-img convert -O qcow2)", m.name)
		}
	}
	if size == 0 {
		return "", fmt.Errorf("%w: empty file", errNotImage)
	}
	if size%512 != 0 {
		return "", fmt.Errorf("%w: %d bytes is not a whole number of 512-byte sectors (an error page instead of the image?)", errNotImage, size)
	}
	if ct := http.DetectContentType(hdr); strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "text/xml") {
		return "", fmt.Errorf("%w: the file starts like %s (an error page instead of the image?)", errNotImage, ct)
	}
	return Raw, nil
}

// checkQcow2Header refuses a qcow2 header that names another file, is
// encrypted, is marked corrupt or has features QEMU does not know.
func checkQcow2Header(b []byte) error {
	h, err := qcow2.Parse(b)
	switch {
	case err != nil:
		return err
	case h.HasBackingFile():
		return fmt.Errorf("qcow2 has a backing file: a base image must be self-contained")
	case h.CryptMethod != 0:
		return fmt.Errorf("qcow2 is encrypted (method %d): QEMU would need a secret", h.CryptMethod)
	case h.IncompatibleFeatures&qcow2.IncompatDataFile != 0:
		return fmt.Errorf("qcow2 has an external data file: a base image must be self-contained")
	case h.Corrupt():
		return fmt.Errorf("qcow2 is marked corrupt")
	case h.UnknownIncompatible() != 0:
		return fmt.Errorf("qcow2 has unknown incompatible features %#x", h.UnknownIncompatible())
	case h.DataFileExt:
		return fmt.Errorf("qcow2 names an external data file: a base image must be self-contained")
	case h.BackingFormatExt:
		return fmt.Errorf("qcow2 names a backing format: a base image must be self-contained")
	case h.CryptoHeaderExt:
		return fmt.Errorf("qcow2 is encrypted: QEMU would need a secret")
	}
	return nil
}

// info is the part of `qemu-img info --output=json` that is checked. Unknown
// fields are ignored; known ones that point at other files are refused.
type info struct {
	Filename            string          `json:"filename"`
	Format              string          `json:"format"`
	VirtualSize         *int64          `json:"virtual-size"`
	Encrypted           bool            `json:"encrypted"`
	BackingFilename     string          `json:"backing-filename"`
	FullBackingFilename string          `json:"full-backing-filename"`
	BackingFormat       string          `json:"backing-filename-format"`
	BackingImage        json.RawMessage `json:"backing-image"`
	FormatSpecific      *struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"format-specific"`
	Children []struct { // QEMU >= 8.0
		Name string `json:"name"`
		Info struct {
			Filename string            `json:"filename"`
			Children []json.RawMessage `json:"children"`
		} `json:"info"`
	} `json:"children"`
}

type qcow2Specific struct {
	DataFile    string          `json:"data-file"`
	DataFileRaw bool            `json:"data-file-raw"`
	Corrupt     bool            `json:"corrupt"`
	Encrypt     json.RawMessage `json:"encrypt"`
}

// CheckInfo validates qemu-img info JSON for a base image of the given format
// (QCOW2 or Raw) and returns what it learnt. It never panics on any input.
func CheckInfo(out []byte, format string) (Image, error) {
	var in info
	if err := json.Unmarshal(out, &in); err != nil {
		return Image{}, fmt.Errorf("qemu-img info output: %w", err)
	}
	var tree any
	if err := json.Unmarshal(out, &tree); err != nil {
		return Image{}, fmt.Errorf("qemu-img info output: %w", err)
	}
	if format != QCOW2 && format != Raw {
		return Image{}, fmt.Errorf("format %q: only qcow2 and raw are accepted", format)
	}
	if in.Format != format {
		return Image{}, fmt.Errorf("qemu-img reports format %q, want %q", in.Format, format)
	}
	if in.BackingFilename != "" || in.FullBackingFilename != "" || in.BackingFormat != "" || len(in.BackingImage) > 0 {
		return Image{}, fmt.Errorf("has a backing file %q: a base image must be self-contained", in.BackingFilename+in.FullBackingFilename)
	}
	if in.Encrypted {
		return Image{}, fmt.Errorf("is encrypted: QEMU would need a secret")
	}
	if in.VirtualSize == nil || *in.VirtualSize <= 0 {
		return Image{}, fmt.Errorf("no virtual size")
	}
	if fs := in.FormatSpecific; fs != nil {
		switch {
		case fs.Type == QCOW2 && format == QCOW2:
			var q qcow2Specific
			if len(fs.Data) > 0 {
				if err := json.Unmarshal(fs.Data, &q); err != nil {
					return Image{}, fmt.Errorf("qemu-img info qcow2 data: %w", err)
				}
			}
			if q.DataFile != "" || q.DataFileRaw {
				return Image{}, fmt.Errorf("has an external data file %q: a base image must be self-contained", q.DataFile)
			}
			if q.Corrupt {
				return Image{}, fmt.Errorf("qcow2 is marked corrupt")
			}
			if len(q.Encrypt) > 0 && string(q.Encrypt) != "null" {
				return Image{}, fmt.Errorf("is encrypted: QEMU would need a secret")
			}
		case fs.Type == "file" && format == Raw:
		default:
			return Image{}, fmt.Errorf("unexpected format-specific data of type %q for %s", fs.Type, format)
		}
	}
	for _, c := range in.Children {
		if c.Name != "file" || len(c.Info.Children) > 0 || (in.Filename != "" && c.Info.Filename != in.Filename) {
			return Image{}, fmt.Errorf("opens another file: child %q (%q)", c.Name, c.Info.Filename)
		}
	}
	if key, val := findOtherFile(tree, 0); key != "" {
		return Image{}, fmt.Errorf("names another file (%s %s): a base image must be self-contained", key, val)
	}
	return Image{Format: format, VirtualSize: uint64(*in.VirtualSize)}, nil
}

// otherFileKeys name another file in qemu-img info output, at any depth.
var otherFileKeys = []string{"backing-filename", "full-backing-filename", "backing-filename-format",
	"backing-image", "backing", "data-file"}

// findOtherFile walks the decoded JSON and returns the first key (compared
// case-insensitively, as encoding/json matches fields) of otherFileKeys whose
// value is anything but empty, null or false. Depth is bounded.
func findOtherFile(v any, depth int) (string, string) {
	if depth > 32 {
		return "nesting", "too deep"
	}
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			for _, bad := range otherFileKeys {
				if strings.EqualFold(k, bad) && !emptyJSON(val) {
					b, _ := json.Marshal(val)
					return k, string(b)
				}
			}
			if k2, v2 := findOtherFile(val, depth+1); k2 != "" {
				return k2, v2
			}
		}
	case []any:
		for _, e := range t {
			if k2, v2 := findOtherFile(e, depth+1); k2 != "" {
				return k2, v2
			}
		}
	}
	return "", ""
}

func emptyJSON(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	}
	return false
}
