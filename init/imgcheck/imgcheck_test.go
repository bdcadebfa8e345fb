package imgcheck

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/qcow2"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/qemuimg"
)

// TestCheckRealImages makes images with the real qemu-img and checks each is
// accepted or refused, with the reason.
func TestCheckRealImages(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", p("base.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", p("base.qcow2"), p("backed.qcow2"))
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+p("data.raw"), p("datafile.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+p("data2.raw")+",data_file_raw=on", p("datafileraw.qcow2"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "raw", p("disk.raw"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "vmdk", p("disk.vmdk"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", p("flat.vmdk"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "vpc", p("disk.vhd"), "4M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", p("v2.qcow2"), "4M")
	if err := os.WriteFile(p("notes.txt"), []byte("this is not a disk image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	page := "<!DOCTYPE html><html><body>Not found</body></html>" + strings.Repeat(" ", 512)
	if err := os.WriteFile(p("page.html"), []byte(page[:512]), 0o644); err != nil {
		t.Fatal(err)
	}
	// A qcow2 with an impossible cluster size: qemu-img cannot open it.
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", p("broken.qcow2"), "4M")
	if f, err := os.OpenFile(p("broken.qcow2"), os.O_WRONLY, 0); err == nil {
		f.WriteAt([]byte{0, 0, 0, 40}, 20) // cluster_bits
		f.Close()
	}
	if err := os.WriteFile(p("empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", "gzip -c "+p("disk.raw")+" > "+p("disk.raw.gz")).CombinedOutput(); err != nil {
		t.Fatalf("gzip: %v %s", err, out)
	}

	tests := []struct {
		file       string
		wantFormat string // "" = refused
		reason     string
	}{
		{"base.qcow2", QCOW2, ""},
		{"v2.qcow2", QCOW2, ""},
		{"disk.raw", Raw, ""},
		{"backed.qcow2", "", "backing file"},
		{"datafile.qcow2", "", "external data file"},
		{"datafileraw.qcow2", "", "external data file"},
		{"disk.vmdk", "", "vmdk"},
		{"flat.vmdk", "", "vmdk descriptor"},
		{"disk.vhd", "", "vpc"},
		{"notes.txt", "", "512-byte sectors"},
		{"page.html", "", "error page"},
		{"empty", "", "empty"},
		{"broken.qcow2", "", "qemu-img info"},
		{"disk.raw.gz", "", "gzip-compressed"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			img, err := Check(context.Background(), p(tt.file), qemuimg.DefaultTimeout)
			if tt.wantFormat != "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if img.Format != tt.wantFormat || img.VirtualSize != 4<<20 {
					t.Errorf("got %+v", img)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want refused", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("err = %v, want reason %q", err, tt.reason)
			}
		})
	}
}

// TestCheckInfoRealJSON runs qemu-img info on images it must refuse (a header
// check alone would catch them first) so the JSON validation is tested on what
// this qemu-img really prints.
func TestCheckInfoRealJSON(t *testing.T) {
	dir := t.TempDir()
	base, backed, df := filepath.Join(dir, "b.qcow2"), filepath.Join(dir, "o.qcow2"), filepath.Join(dir, "d.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", base, "1M")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, backed)
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "d.raw"), df, "1M")
	for _, c := range []struct{ path, reason string }{{backed, "backing file"}, {df, "external data file"}} {
		out, err := Info(context.Background(), c.path, QCOW2, qemuimg.DefaultTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CheckInfo(out, QCOW2); err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: CheckInfo err = %v, want %q", c.path, err, c.reason)
		}
	}
	out, err := Info(context.Background(), base, QCOW2, qemuimg.DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckInfo(out, Raw); err == nil {
		t.Errorf("a qcow2's info accepted as raw")
	}
	if img, err := CheckInfo(out, QCOW2); err != nil || img.VirtualSize != 1<<20 {
		t.Errorf("CheckInfo(base) = %+v, %v", img, err)
	}
}

func TestCheckInfoTable(t *testing.T) {
	tests := []struct {
		json, format string
		ok           bool
	}{
		{`{"format":"raw","virtual-size":512}`, Raw, true},
		{`{"format":"qcow2","virtual-size":512,"format-specific":{"type":"qcow2","data":{"compat":"1.1"}}}`, QCOW2, true},
		{`{"format":"qcow2","virtual-size":512,"children":[{"name":"file","info":{"filename":"a"}}],"filename":"a"}`, QCOW2, true},
		{`{"format":"qcow2","virtual-size":512,"children":[{"name":"data-file","info":{"filename":"/etc/shadow"}}]}`, QCOW2, false},
		{`{"format":"qcow2","virtual-size":512,"format-specific":{"type":"qcow2","data":{"encrypt":{"format":"luks"}}}}`, QCOW2, false},
		{`{"format":"qcow2","virtual-size":512,"encrypted":true}`, QCOW2, false},
		{`{"format":"qcow2","virtual-size":512,"backing-image":{}}`, QCOW2, false},
		{`{"format":"vmdk","virtual-size":512}`, "vmdk", false},
		{`{"format":"raw"}`, Raw, false},
		{`{"format":"raw","virtual-size":-1}`, Raw, false},
		{`{"format":"raw","virtual-size":512,"format-specific":{"type":"vmdk"}}`, Raw, false},
		{`[]`, Raw, false},
		{``, Raw, false},
	}
	for _, tt := range tests {
		_, err := CheckInfo([]byte(tt.json), tt.format)
		if (err == nil) != tt.ok {
			t.Errorf("CheckInfo(%s, %s) err = %v, want ok=%v", tt.json, tt.format, err, tt.ok)
		}
	}
}

// FuzzCheckInfo: the validation never panics, and whatever it accepts is a
// qcow2 or raw image with a size and no other file named anywhere.
func FuzzCheckInfo(f *testing.F) {
	f.Add([]byte(`{"format":"raw","virtual-size":512}`), true)
	f.Add([]byte(`{"format":"qcow2","virtual-size":1048576,"format-specific":{"type":"qcow2","data":{"data-file":"/x"}}}`), false)
	f.Add([]byte(`{"format":"qcow2","virtual-size":1,"backing-filename":"/etc/passwd"}`), false)
	f.Add([]byte(`{"format":"qcow2","virtual-size":1,"children":[{"name":"file","info":{"children":[{}]}}]}`), false)
	f.Fuzz(func(t *testing.T, data []byte, qcow bool) {
		format := Raw
		if qcow {
			format = QCOW2
		}
		img, err := CheckInfo(data, format)
		if err != nil {
			return
		}
		if img.Format != format || img.VirtualSize == 0 {
			t.Fatalf("accepted %+v", img)
		}
		var tree any
		if err := json.Unmarshal(data, &tree); err != nil {
			t.Fatalf("accepted invalid JSON: %v", err)
		}
		if k, v := findOtherFile(tree, 0); k != "" {
			t.Fatalf("accepted info naming another file: %s %s", k, v)
		}
		if strings.Contains(strings.ToLower(string(data)), `"data-file":"/`) {
			t.Fatalf("accepted an external data file: %s", data)
		}
	})
}

// FuzzSniffFormat: the header parser never panics on any bytes, and never
// accepts a qcow2 header naming a backing file or an external data file.
// Seeds include real headers made by qemu-img.
func FuzzSniffFormat(f *testing.F) {
	f.Add([]byte("QFI\xfb\x00\x00\x00\x03"), int64(512))
	f.Add([]byte("KDMV"), int64(512))
	f.Add(make([]byte, 512), int64(512))
	dir := f.TempDir()
	for i, opts := range []string{"compat=1.1", "compat=0.10", "data_file=" + filepath.Join(dir, "d.raw"), "compression_type=zstd"} {
		p := filepath.Join(dir, fmt.Sprintf("s%d.qcow2", i))
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, p, "1M").CombinedOutput(); err != nil {
			f.Fatalf("qemu-img: %v %s", err, out)
		}
		b, _ := os.ReadFile(p)
		f.Add(b[:min(len(b), 4096)], int64(len(b)))
	}
	f.Fuzz(func(t *testing.T, hdr []byte, size int64) {
		format, err := SniffFormat(hdr, size)
		if err != nil {
			return
		}
		if format != QCOW2 && format != Raw {
			t.Fatalf("format %q", format)
		}
		if format == QCOW2 {
			be := binary.BigEndian
			if be.Uint64(hdr[8:]) != 0 {
				t.Fatalf("accepted a backing file offset")
			}
			if be.Uint32(hdr[4:]) == 3 && be.Uint64(hdr[72:])&qcow2.IncompatDataFile != 0 {
				t.Fatalf("accepted the external data file bit")
			}
		}
	})
}

// TestRefusedNotAnImage: NotAnImage tells a file that is no disk image (an error page, a
// download cut to no whole sector) from a real image refused for what it is (a backing file,
// another format): image-fetch retries the first and calls the second bad input.
func TestRefusedNotAnImage(t *testing.T) {
	dir := t.TempDir()
	parent := filepath.Join(dir, "parent.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", parent, "1M")
	child := filepath.Join(dir, "child.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", parent, "-F", "qcow2", child)
	vmdk := filepath.Join(dir, "x.vmdk")
	stagetest.QemuImg(t, "create", "-q", "-f", "vmdk", vmdk, "1M")
	html := filepath.Join(dir, "page.img")
	if err := os.WriteFile(html, []byte("<!DOCTYPE html><html><body>404 Not Found</body></html>"+strings.Repeat(" ", 512*2-54)), 0o644); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(dir, "odd.img")
	if err := os.WriteFile(odd, []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path       string
		notAnImage bool
	}{{child, false}, {vmdk, false}, {html, true}, {odd, true}} {
		_, err := Check(context.Background(), tc.path, qemuimg.DefaultTimeout)
		var r *RefusedError
		if !errors.As(err, &r) {
			t.Fatalf("%s: err = %v, want a RefusedError", tc.path, err)
		}
		if r.NotAnImage != tc.notAnImage {
			t.Errorf("%s: NotAnImage = %v, want %v (%v)", filepath.Base(tc.path), r.NotAnImage, tc.notAnImage, err)
		}
	}
}

// TestCheckTruncatedQcow2: a qcow2 with data, cut to half (what a server that
// sends a short Content-Length and exactly that many bytes leaves), passes the
// header and qemu-img info but is refused by the full check as damaged
// (NotAnImage: another download may be whole); the whole file passes.
func TestCheckTruncatedQcow2(t *testing.T) {
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", whole, "64M")
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 4M", "-c", "write -P 0xcd 32M 4M", whole).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	b, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{len(b) / 2, len(b) - 65536, 4 * 65536} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("cut%d.qcow2", cut))
			if err := os.WriteFile(p, b[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Info(context.Background(), p, QCOW2, qemuimg.DefaultTimeout); err != nil {
				t.Fatalf("qemu-img info already refuses the cut file (the test shows nothing): %v", err)
			}
			_, err := Check(context.Background(), p, qemuimg.DefaultTimeout)
			var re *RefusedError
			if !errors.As(err, &re) || !re.NotAnImage || !strings.Contains(re.Reason, "truncated") {
				t.Fatalf("Check(%d of %d bytes) = %v, want a refusal as truncated (NotAnImage)", cut, len(b), err)
			}
			if len(re.Reason) > 2*qemuimg.MaxStderr {
				t.Errorf("reason is %d bytes: qemu-img's stderr is not bounded", len(re.Reason))
			}
		})
	}
	if img, err := Check(context.Background(), whole, qemuimg.DefaultTimeout); err != nil || img.Format != QCOW2 {
		t.Fatalf("whole image: %v %v", img, err)
	}
}
