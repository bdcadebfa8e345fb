package fetch

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/datadisk"
)

// statOnly accepts /images/*.qcow2 and refuses anything else as missing.
func statOnly(p string) error {
	if strings.HasPrefix(p, "/images/") {
		return nil
	}
	return fs.ErrNotExist
}

func TestFromEnv(t *testing.T) {
	base := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": "https://example.org/img/debian-12.qcow2?x=1"}
	p, err := FromEnv(stage.MapEnv(base), statOnly)
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{VMName: "vm0", Artifact: Artifact{Var: "IMG_SOURCE", Source: base["IMG_SOURCE"], Remote: true, Target: "debian-12.qcow2"},
		ImageDir: stage.DefaultImageDir, DiskDir: stage.DefaultDiskDir, Fetch: DefaultPolicy(),
		Data: datadisk.Plan{Dir: disks.DefaultDir, BlockDir: disks.BlockDir}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("plan = %+v\nwant %+v", p, want)
	}
	if p.OverlayPath() != "/var/lib/berth/disk/vm0.qcow2" || p.RecordPath() != "/var/lib/berth/images/debian-12.qcow2.sha256" {
		t.Errorf("paths: %s %s", p.OverlayPath(), p.RecordPath())
	}

	p, err = FromEnv(stage.MapEnv(map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": "/images/a.qcow2",
		"IMG_TARGET": "b.img", "IMG_SHA256": strings.Repeat("AB", 32), "DISK_SIZE": "4Gi",
		"IMAGE_DIR": "/c", "DISK_DIR": "/d"}), statOnly)
	if err != nil {
		t.Fatal(err)
	}
	if q, err := FromEnv(stage.MapEnv(map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": "/images/a.qcow2",
		"DISK_LEGACY_DIR": "/var/lib/berth/volume", "DATA_DISKS": `[{"name":"data","size":"1Gi"}]`, "DATA_DISK_DIR": "/dd"}), statOnly); err != nil ||
		q.LegacyDir != "/var/lib/berth/volume" || len(q.Data.Disks) != 1 || q.Data.Disks[0].Bytes != 1<<30 || q.Data.Dir != "/dd" ||
		q.Data.Path(q.Data.Disks[0]) != "/dd/data/data.qcow2" {
		t.Errorf("with data disks and the legacy dir: %+v %v", q, err)
	}
	if p.LegacyDir != "" || len(p.Data.Disks) != 0 {
		t.Errorf("legacy %q, data disks %v without DISK_LEGACY_DIR and DATA_DISKS", p.LegacyDir, p.Data.Disks)
	}
	if p.Remote || p.Target != "b.img" || p.SHA256 != strings.Repeat("ab", 32) || p.DiskSize != 4<<30 || p.DiskSizeText != "4Gi" || p.ImageDir != "/c" {
		t.Errorf("plan = %+v", p)
	}
}

// Bad inputs, each exit 2 naming the variable:
// IMG_SOURCE empty, unset, file://, ftp://, data:, s3://, a relative path, an unclean path, a missing
// local file, a URL without a host, a URL with credentials; IMG_TARGET "/", "..", ".", a path,
// hidden, ending in .sha256, with a control character; a URL whose base name is "/" or hidden with no
// IMG_TARGET; IMG_SHA256 too short, too long, not hex; DISK_SIZE unparsable, zero, negative, not a
// multiple of 512; IMAGE_DIR/DISK_DIR relative; VM_NAME invalid; IMG_TARGET equal to the pet disk's
// or its record's name when IMAGE_DIR = DISK_DIR.
func TestFromEnvBadInputs(t *testing.T) {
	const url = "http://h/x.qcow2"
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"source unset", map[string]string{}, "IMG_SOURCE"},
		{"source empty", map[string]string{"IMG_SOURCE": ""}, "IMG_SOURCE"},
		{"file scheme", map[string]string{"IMG_SOURCE": "file:///images/a.qcow2"}, "IMG_SOURCE"},
		{"ftp scheme", map[string]string{"IMG_SOURCE": "ftp://h/a.qcow2"}, "IMG_SOURCE"},
		{"data scheme", map[string]string{"IMG_SOURCE": "data:text/plain,abc"}, "IMG_SOURCE"},
		{"s3 scheme", map[string]string{"IMG_SOURCE": "s3://bucket/a.qcow2"}, "IMG_SOURCE"},
		{"relative path", map[string]string{"IMG_SOURCE": "images/a.qcow2"}, "IMG_SOURCE"},
		{"unclean path", map[string]string{"IMG_SOURCE": "/images/../etc/shadow"}, "IMG_SOURCE"},
		{"missing local", map[string]string{"IMG_SOURCE": "/nope/a.qcow2"}, "IMG_SOURCE"},
		{"no host", map[string]string{"IMG_SOURCE": "http:///a.qcow2"}, "IMG_SOURCE"},
		{"credentials", map[string]string{"IMG_SOURCE": "http://u:p@h/a.qcow2"}, "IMG_SOURCE"},
		{"target slash", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "/"}, "IMG_TARGET"},
		{"target dotdot", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": ".."}, "IMG_TARGET"},
		{"target dot", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "."}, "IMG_TARGET"},
		{"target path", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "a/b.qcow2"}, "IMG_TARGET"},
		{"target hidden", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": ".x.qcow2"}, "IMG_TARGET"},
		{"target record", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "x.sha256"}, "IMG_TARGET"},
		{"target control", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "a\nb"}, "IMG_TARGET"},
		{"url dir", map[string]string{"IMG_SOURCE": "http://h/"}, "IMG_TARGET"},
		{"url no path", map[string]string{"IMG_SOURCE": "http://h"}, "IMG_TARGET"},
		{"url hidden", map[string]string{"IMG_SOURCE": "http://h/.img"}, "IMG_TARGET"},
		{"sha short", map[string]string{"IMG_SOURCE": url, "IMG_SHA256": "abc"}, "IMG_SHA256"},
		{"sha long", map[string]string{"IMG_SOURCE": url, "IMG_SHA256": strings.Repeat("a", 65)}, "IMG_SHA256"},
		{"sha not hex", map[string]string{"IMG_SOURCE": url, "IMG_SHA256": strings.Repeat("g", 64)}, "IMG_SHA256"},
		{"size junk", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "big"}, "DISK_SIZE"},
		{"size zero", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "0"}, "DISK_SIZE"},
		{"size negative", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "-1Gi"}, "DISK_SIZE"},
		{"size unaligned", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "1000"}, "DISK_SIZE"},
		{"image dir relative", map[string]string{"IMG_SOURCE": url, "IMAGE_DIR": "images"}, "IMAGE_DIR"},
		{"disk dir relative", map[string]string{"IMG_SOURCE": url, "DISK_DIR": "disk"}, "DISK_DIR"},
		{"vm name", map[string]string{"IMG_SOURCE": url, "VM_NAME": "A/B"}, "VM_NAME"},
		// issue 15: hostile input; each refused with exit 2 naming the variable
		{"disk size over qcow2's range", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "16000000Ti"}, "DISK_SIZE"},
		{"disk size 512 over qcow2's range", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "2251799813685760"}, "DISK_SIZE"},
		{"disk size newline", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": "1Gi\n"}, "DISK_SIZE"},
		{"disk size space", map[string]string{"IMG_SOURCE": url, "DISK_SIZE": " 1Gi"}, "DISK_SIZE"},
		{"sha with newline", map[string]string{"IMG_SOURCE": url, "IMG_SHA256": strings.Repeat("a", 64) + "\n"}, "IMG_SHA256"},
		{"sha with spaces", map[string]string{"IMG_SOURCE": url, "IMG_SHA256": " " + strings.Repeat("a", 64)}, "IMG_SHA256"},
		{"image dir trailing slash", map[string]string{"IMG_SOURCE": url, "IMAGE_DIR": "/c/"}, "IMAGE_DIR"},
		{"image dir dotdot", map[string]string{"IMG_SOURCE": url, "IMAGE_DIR": "/c/../d"}, "IMAGE_DIR"},
		{"image dir newline", map[string]string{"IMG_SOURCE": url, "IMAGE_DIR": "/c\nd"}, "IMAGE_DIR"},
		{"disk dir space", map[string]string{"IMG_SOURCE": url, "DISK_DIR": "/tmp/ x"}, "DISK_DIR"},
		{"disk dir unicode", map[string]string{"IMG_SOURCE": url, "DISK_DIR": "/d\u00e9"}, "DISK_DIR"},
		{"disk dir relative", map[string]string{"IMG_SOURCE": url, "DISK_DIR": "d"}, "DISK_DIR"},
		{"run dir relative", map[string]string{"IMG_SOURCE": url, "BERTH_RUN_DIR": "run"}, "BERTH_RUN_DIR"},
		{"target dashes", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "--x"}, "IMG_TARGET"},
		{"target space", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "a b"}, "IMG_TARGET"},
		{"target unicode", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "\u00e9.img"}, "IMG_TARGET"},
		{"target quote", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "a\"b"}, "IMG_TARGET"},
		{"url with space", map[string]string{"IMG_SOURCE": "http://h/x y"}, "IMG_SOURCE"},
		{"url with unicode", map[string]string{"IMG_SOURCE": "http://h/\u00e9"}, "IMG_SOURCE"},
		{"local source with space", map[string]string{"IMG_SOURCE": "/i/a b.img"}, "IMG_SOURCE"},
		{"local source trailing slash", map[string]string{"IMG_SOURCE": "/i/"}, "IMG_SOURCE"},
		{"target is the pet disk", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "vm0.qcow2", "IMAGE_DIR": "/d", "DISK_DIR": "/d"}, "IMG_TARGET"},
		{"target is the pet record", map[string]string{"IMG_SOURCE": url, "IMG_TARGET": "vm0.json", "IMAGE_DIR": "/d", "DISK_DIR": "/d"}, "IMG_TARGET"},
		// issue 18: data disks and the legacy layout
		{"data disks not JSON", map[string]string{"IMG_SOURCE": url, "DATA_DISKS": "data=1Gi"}, "DATA_DISKS"},
		{"data disk without size", map[string]string{"IMG_SOURCE": url, "DATA_DISKS": `[{"name":"data"}]`}, "DATA_DISKS"},
		{"data disk size G", map[string]string{"IMG_SOURCE": url, "DATA_DISKS": `[{"name":"data","size":"1G"}]`}, "DATA_DISKS"},
		{"data disk dir relative", map[string]string{"IMG_SOURCE": url, "DATA_DISK_DIR": "disks"}, "DATA_DISK_DIR"},
		{"legacy dir relative", map[string]string{"IMG_SOURCE": url, "DISK_LEGACY_DIR": "volume"}, "DISK_LEGACY_DIR"},
		{"legacy dir is DISK_DIR", map[string]string{"IMG_SOURCE": url, "DISK_LEGACY_DIR": "/var/lib/berth/disk"}, "DISK_LEGACY_DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := tt.env["VM_NAME"]; !ok {
				tt.env["VM_NAME"] = "vm0"
			}
			_, err := FromEnv(stage.MapEnv(tt.env), statOnly)
			var ie *stage.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want bad input", err)
			}
			if ie.Var != tt.wantVar {
				t.Errorf("err names %s, want %s: %v", ie.Var, tt.wantVar, err)
			}
			if strings.Contains(err.Error(), "u:p@") {
				t.Errorf("error leaks credentials: %v", err)
			}
		})
	}
}
