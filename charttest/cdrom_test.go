package charttest

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// cdromVM is a VM with a blank disk and an installer ISO, the smallest values for one.
const cdromVM = `
vms:
  vm1:
    image:
      source: ""
    cdrom:
      source: https://isos.example/debian-12.iso
`

// iso is one item of CDROMS as common/artifact reads it.
type iso struct {
	Source string `json:"source"`
	SHA256 string `json:"sha256,omitempty"`
	Target string `json:"target,omitempty"`
}

// parseCDROMs decodes CDROMS as the stages do: a JSON array of {source, sha256, target}, no other
// key, one value.
func parseCDROMs(t *testing.T, v string) []iso {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(v))
	d.DisallowUnknownFields()
	var l []iso
	if err := d.Decode(&l); err != nil || d.More() {
		t.Fatalf("CDROMS %q: not one JSON array of {source, sha256, target}: %v", v, err)
	}
	return l
}

// file is the ISO's name in the image cache, as image-fetch names it: target, else the source's
// base name (a URL's decoded path).
func (i iso) file(t *testing.T) string {
	t.Helper()
	switch {
	case i.Target != "":
		return i.Target
	case strings.HasPrefix(i.Source, "/"):
		return filepath.Base(i.Source)
	}
	u, err := url.Parse(i.Source)
	if err != nil {
		t.Fatalf("CDROMS source: %v", err)
	}
	return path.Base(u.Path)
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestCdroms: cdrom and extraCdroms reach image-fetch and vmm as one CDROMS, the same in both: a
// compact JSON array, the installer first, each {source} with sha256 and target only when set;
// no CDROMS at all without an ISO. What the kubelet hands the stages (after $$) decodes to exactly
// the values given, whatever the URL holds.
func TestCdroms(t *testing.T) {
	const oddURL = `https://isos.example/a%20b/x.iso?t=$(VM_NAME)&q="it's"<a>{b}|^~\`
	for _, tc := range []struct {
		name, values string
		cdroms       string // the value as rendered in the manifest (JSON, $ doubled); "": none
		want         []iso  // what the stages read
	}{
		{"none", oneVM, "", nil},
		{"an empty cdrom is none", oneVM + "    cdrom: {source: \"\"}\n    extraCdroms: []\n", "", nil},
		{"installer only", cdromVM,
			`[{"source":"https://isos.example/debian-12.iso"}]`,
			[]iso{{Source: "https://isos.example/debian-12.iso"}}},
		{"installer with sha256 and target", cdromVM + "      sha256: \"" + strings.ToUpper(hex64) + "\"\n      target: debian.iso\n",
			`[{"sha256":"` + strings.ToUpper(hex64) + `","source":"https://isos.example/debian-12.iso","target":"debian.iso"}]`,
			[]iso{{Source: "https://isos.example/debian-12.iso", SHA256: strings.ToUpper(hex64), Target: "debian.iso"}}},
		{"installer and extras, in order, each field only when set", cdromVM + `      sha256: "` + hex64 + `"
    extraCdroms:
      - source: /isos/virtio-win.iso
      - {source: "http://isos.example/drivers.iso", target: drivers-1.iso, sha256: ""}
      - {source: "https://isos.example/tools.iso", sha256: "` + hex64 + `"}
`,
			`[{"sha256":"` + hex64 + `","source":"https://isos.example/debian-12.iso"},{"source":"/isos/virtio-win.iso"},{"source":"http://isos.example/drivers.iso","target":"drivers-1.iso"},{"sha256":"` + hex64 + `","source":"https://isos.example/tools.iso"}]`,
			[]iso{{Source: "https://isos.example/debian-12.iso", SHA256: hex64}, {Source: "/isos/virtio-win.iso"},
				{Source: "http://isos.example/drivers.iso", Target: "drivers-1.iso"}, {Source: "https://isos.example/tools.iso", SHA256: hex64}}},
		{"extras beside a base image, no installer", oneVM + "    extraCdroms: [{source: https://isos.example/rescue.iso}]\n",
			`[{"source":"https://isos.example/rescue.iso"}]`,
			[]iso{{Source: "https://isos.example/rescue.iso"}}},
		{"a URL with $, quotes, &, <, > and a backslash", "vms:\n  vm1:\n    image: {source: \"\"}\n    cdrom: {source: '" + strings.ReplaceAll(oddURL, "'", "''") + "', target: x.iso}\n",
			// Helm's toJson escapes <, > and & as \u003c, \u003e, \u0026 (JSON all the same)
			`[{"source":"https://isos.example/a%20b/x.iso?t=$$(VM_NAME)\u0026q=\"it's\"\u003ca\u003e{b}|^~\\","target":"x.iso"}]`,
			[]iso{{Source: oddURL, Target: "x.iso"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sts(t, render(t, tc.values), "vm1")
			for _, c := range []string{"image-fetch", "vm"} {
				got, ok := env(container(t, s, c))["CDROMS"]
				if tc.cdroms == "" {
					if ok {
						t.Errorf("%s: CDROMS=%q without an ISO, want none", c, got)
					}
					continue
				}
				if got != tc.cdroms {
					t.Errorf("%s: CDROMS\n%s\nwant\n%s", c, got, tc.cdroms)
				}
				var compact bytes.Buffer
				if err := json.Compact(&compact, []byte(got)); err != nil || compact.String() != got {
					t.Errorf("%s: CDROMS is not compact JSON (%v): %s", c, err, got)
				}
				l := parseCDROMs(t, kubeletEnv(container(t, s, c))["CDROMS"])
				if len(l) != len(tc.want) {
					t.Fatalf("%s: CDROMS holds %d ISOs %+v, want %+v", c, len(l), l, tc.want)
				}
				for i := range l {
					if l[i] != tc.want[i] {
						t.Errorf("%s: CDROMS[%d] = %+v, want %+v", c, i, l[i], tc.want[i])
					}
				}
			}
			// no other container gets it
			for _, c := range allContainers(s) {
				if _, ok := env(c)["CDROMS"]; ok && c.Name != "image-fetch" && c.Name != "vm" {
					t.Errorf("%s has CDROMS", c.Name)
				}
			}
		})
	}
}

// TestCdromsPerVM: cdrom is merged over vmDefaults key by key (a VM can turn the default installer
// off with source ""), extraCdroms replaces the default list.
func TestCdromsPerVM(t *testing.T) {
	r := render(t, `vmDefaults:
  image: {source: ""}
  cdrom: {source: "https://isos.example/debian-12.iso"}
  extraCdroms: [{source: "https://isos.example/drivers.iso"}]
vms:
  vm1: {}
  vm2:
    cdrom: {sha256: "`+hex64+`"}
    extraCdroms: []
  vm3:
    image: {source: "http://images.example/debian-12.qcow2"}
    cdrom: {source: ""}
`)
	for vm, want := range map[string]string{
		"vm1": `[{"source":"https://isos.example/debian-12.iso"},{"source":"https://isos.example/drivers.iso"}]`,
		"vm2": `[{"sha256":"` + hex64 + `","source":"https://isos.example/debian-12.iso"}]`,
		"vm3": `[{"source":"https://isos.example/drivers.iso"}]`,
	} {
		if got := env(container(t, sts(t, r, vm), "vm"))["CDROMS"]; got != want {
			t.Errorf("%s: CDROMS %s, want %s", vm, got, want)
		}
	}
}

// TestBlankDisk: image.source empty with an installer ISO is a blank pet disk: image-fetch gets
// DISK_BLANK=true, IMG_SOURCE there and empty, no IMG_TARGET or IMG_SHA256; the disk's PVC is as
// for any disk; NOTES says what is downloaded, that the ISO is read-only, the disk boots first and
// how to detach it.
func TestBlankDisk(t *testing.T) {
	r := render(t, cdromVM+"    diskSize: 20Gi\n    extraCdroms: [{source: /isos/virtio-win.iso}]\n")
	fetch := container(t, sts(t, r, "vm1"), "image-fetch")
	var found bool
	for _, e := range fetch.Env {
		switch e.Name {
		case "IMG_SOURCE":
			found = true
			if e.Value != "" || e.ValueFrom != nil {
				t.Errorf("IMG_SOURCE = %+v, want the empty string", e)
			}
		case "IMG_TARGET", "IMG_SHA256":
			t.Errorf("%s set for a blank disk: %q", e.Name, e.Value)
		}
	}
	if !found {
		t.Error("no IMG_SOURCE: image-fetch needs it set, empty, for a blank disk")
	}
	if e := env(fetch); e["DISK_SIZE"] != "20Gi" || e["DISK_BLANK"] != "true" {
		t.Errorf("DISK_SIZE %q, DISK_BLANK %q: want 20Gi, true", e["DISK_SIZE"], e["DISK_BLANK"])
	}
	// DISK_BLANK is image-fetch's alone, and only a blank disk's
	for _, c := range allContainers(sts(t, r, "vm1")) {
		if _, ok := env(c)["DISK_BLANK"]; ok && c.Name != "image-fetch" {
			t.Errorf("%s has DISK_BLANK", c.Name)
		}
	}
	for _, c := range allContainers(sts(t, render(t, oneVM+"    cdrom: {source: /isos/a.iso}\n"), "vm1")) {
		if v, ok := env(c)["DISK_BLANK"]; ok {
			t.Errorf("an imaged VM: %s has DISK_BLANK=%q", c.Name, v)
		}
	}
	pvc, err := r.PVC("disk-rel-vm1-0")
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Annotations["berth-vm.github.io/disk-size"] != "20Gi" {
		t.Errorf("PVC annotations %v", pvc.Annotations)
	}
	for _, want := range []string{
		"(first boot downloads debian-12.iso, virtio-win.iso and makes a blank 20Gi disk; watch: kubectl -n vms logs -f rel-vm1-0 -c image-fetch)",
		"  cdrom:    debian-12.iso (the installer ISO, with virtio-win.iso) is attached read-only and the disk boots first, so after the installer's reboot the installed system boots; detach it: remove vms.vm1.cdrom, helm upgrade\n",
		"(a user made in the installer, once the installed system runs an SSH server)",
	} {
		if !strings.Contains(r.Notes, want) {
			t.Errorf("NOTES lacks %q:\n%s", want, r.Notes)
		}
	}
	// an imaged VM's NOTES are as before; ISOs without an installer get their own line
	n := render(t, oneVM+"    extraCdroms: [{source: \"https://isos.example/rescue.iso?x=1\"}, {source: /isos/b.iso, target: c.iso}]\n").Notes
	for _, want := range []string{"(first boot downloads debian-12.qcow2, rescue.iso, c.iso; watch:", "  cdroms:   rescue.iso, c.iso attached read-only, after the disks\n", "(the image's default user"} {
		if !strings.Contains(n, want) {
			t.Errorf("NOTES lacks %q:\n%s", want, n)
		}
	}
	if n := render(t, oneVM).Notes; strings.Contains(n, "cdrom") || !strings.Contains(n, "(first boot downloads debian-12.qcow2; watch:") {
		t.Errorf("NOTES of a VM without ISOs:\n%s", n)
	}
}

// TestBlankDiskRefused: a VM with neither a base image nor an installer is refused as before, a
// blank disk with a base image's sha256 or target too, and so are the ISO lists the stages would
// refuse, each naming the value.
func TestBlankDiskRefused(t *testing.T) {
	c := load(t)
	for _, tc := range []struct{ name, values, msg string }{
		{"no image, no cdrom", "vms:\n  vm1:\n    cpus: 2\n", "berth: vms.vm1.image.source is required (an http(s) URL of a qcow2 or raw image); it may be empty only with cdrom.source set"},
		{"no image, extras only", "vms:\n  vm1:\n    extraCdroms: [{source: https://isos.example/a.iso}]\n", "vms.vm1.image.source is required"},
		{"no image, an empty cdrom", "vms:\n  vm1:\n    cdrom: {source: \"\"}\n", "vms.vm1.image.source is required"},
		{"blank with image.sha256", strings.Replace(cdromVM, "      source: \"\"\n", "      source: \"\"\n      sha256: \""+hex64+"\"\n", 1),
			"berth: vms.vm1.image.sha256 is set, but image.source is empty (a blank pet disk has no base image): remove image.sha256, or set image.source"},
		{"blank with image.target", strings.Replace(cdromVM, "      source: \"\"\n", "      source: \"\"\n      target: base.qcow2\n", 1),
			"berth: vms.vm1.image.target is set, but image.source is empty"},
		{"cdrom.sha256 without a source", oneVM + "    cdrom: {sha256: \"" + hex64 + "\"}\n",
			"berth: vms.vm1.cdrom.sha256 is set, but cdrom.source is empty (no installer ISO): remove cdrom.sha256, or set cdrom.source"},
		{"cdrom.target without a source", oneVM + "    cdrom: {target: x.iso}\n", "berth: vms.vm1.cdrom.target is set, but cdrom.source is empty"},
		{"seven ISOs", cdromVM + "    extraCdroms: [" + strings.Repeat("{source: /i/x.iso}, ", 5) + "{source: /i/y.iso}]\n",
			"berth: vms.vm1 has 7 ISOs (cdrom and extraCdroms): vmm attaches at most 6"},
		{"two ISOs, one file", cdromVM + "    extraCdroms: [{source: /isos/debian-12.iso}]\n",
			"berth: vms.vm1.cdrom and vms.vm1.extraCdroms[0] would both be debian-12.iso in the image cache: give one of them a target of its own"},
		{"two extras, one target", oneVM + "    extraCdroms: [{source: /isos/a.iso, target: x.iso}, {source: https://isos.example/x.iso}]\n",
			"vms.vm1.extraCdroms[0] and vms.vm1.extraCdroms[1] would both be x.iso in the image cache"},
		{"an ISO named as the base image", oneVM + "    extraCdroms: [{source: /isos/a.iso, target: debian-12.qcow2}]\n",
			"vms.vm1.image and vms.vm1.extraCdroms[0] would both be debian-12.qcow2 in the image cache"},
		{"a URL without a file name", "vms:\n  vm1:\n    image: {source: \"\"}\n    cdrom: {source: \"https://isos.example/?iso=debian\"}\n",
			`berth: vms.vm1.cdrom.source's base name "/" is not a file name the image cache takes`},
		{"a URL of a host only", oneVM + "    extraCdroms: [{source: \"https://isos.example\"}]\n", `vms.vm1.extraCdroms[0].source's base name "." is not a file name`},
		{"a percent-encoded base name", oneVM + "    extraCdroms: [{source: \"https://isos.example/my%20installer.iso\"}]\n",
			`base name "my%20installer.iso" is not a file name the image cache takes (letters, digits, '_', '.', '+' and '-', not starting with '.', '+' or '-', at most 200 characters, not ending in .sha256): set vms.vm1.extraCdroms[0].target`},
		{"a base name ending in .sha256", oneVM + "    extraCdroms: [{source: /isos/x.sha256}]\n", `base name "x.sha256" is not a file name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefused(t, c, tc.values, tc.msg)
		})
	}
}

// TestCdromSchema: what the schema refuses in cdrom and extraCdroms (the rules of image.source,
// which shares its definitions), at the value's path.
func TestCdromSchema(t *testing.T) {
	c := load(t)
	x := func(item string) string { return oneVM + "    extraCdroms: [" + item + "]\n" }
	for _, tc := range []struct{ name, values, msg string }{
		{"ftp://", "vms:\n  vm1:\n    image: {source: \"\"}\n    cdrom: {source: \"ftp://isos.example/debian-12.iso\"}\n", "/vms/vm1/cdrom/source"},
		{"file://", x("{source: \"file:///isos/a.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a relative path", x("{source: isos/a.iso}"), "/vms/vm1/extraCdroms/0/source"},
		{"a path with ..", x("{source: /isos/../etc/a.iso}"), "/vms/vm1/extraCdroms/0/source"},
		{"a path with .", x("{source: /isos/./a.iso}"), "/vms/vm1/extraCdroms/0/source"},
		{"a path with //", x("{source: //isos/a.iso}"), "/vms/vm1/extraCdroms/0/source"},
		{"a path ending in /", x("{source: /isos/}"), "/vms/vm1/extraCdroms/0/source"},
		{"a path with a quote", x("{source: \"/isos/a\\\"b.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a URL with a space", x("{source: \"https://isos.example/a b.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a URL with a newline", x("{source: \"https://isos.example/a\\nb.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a URL not ASCII", x("{source: \"https://isos.example/d\u00e9bian.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a URL with credentials", x("{source: \"https://me:secret@isos.example/a.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a URL without a host", x("{source: \"https:///a.iso\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"a short sha256", cdromVM + "      sha256: abc\n", "/vms/vm1/cdrom/sha256"},
		{"a sha256 not hex", x("{source: /i/a.iso, sha256: \"" + strings.Repeat("g", 64) + "\"}"), "/vms/vm1/extraCdroms/0/sha256"},
		{"a sha256 with a newline", x("{source: /i/a.iso, sha256: \"" + hex64 + "\\n\"}"), "/vms/vm1/extraCdroms/0/sha256"},
		{"a target with a path", cdromVM + "      target: ../a.iso\n", "/vms/vm1/cdrom/target"},
		{"a hidden target", x("{source: /i/a.iso, target: .a.iso}"), "/vms/vm1/extraCdroms/0/target"},
		{"a target ending in .sha256", x("{source: /i/a.iso, target: a.iso.sha256}"), "/vms/vm1/extraCdroms/0/target"},
		{"a target over 200 characters", x("{source: /i/a.iso, target: " + strings.Repeat("a", 201) + "}"), "/vms/vm1/extraCdroms/0/target"},
		{"an unknown key in cdrom", cdromVM + "      readOnly: true\n", "at '/vms/vm1/cdrom': additional properties 'readOnly'"},
		{"an unknown key in an extra", x("{source: /i/a.iso, bus: ide}"), "at '/vms/vm1/extraCdroms/0': additional properties 'bus'"},
		{"an extra without a source", x("{target: a.iso}"), "/vms/vm1/extraCdroms/0"},
		{"an extra with an empty source", x("{source: \"\"}"), "/vms/vm1/extraCdroms/0/source"},
		{"an extra as a string", x("/i/a.iso"), "/vms/vm1/extraCdroms/0"},
		{"seven extras", oneVM + "    extraCdroms: [" + strings.Repeat("{source: /i/x.iso}, ", 6) + "{source: /i/y.iso}]\n", "/vms/vm1/extraCdroms"},
		{"cdrom as a string", oneVM + "    cdrom: /i/a.iso\n", "/vms/vm1/cdrom"},
		// the definitions image.source shares
		{"image.source with credentials", "vms:\n  vm1:\n    image: {source: \"http://u@images.example/a.qcow2\"}\n", "/vms/vm1/image/source"},
		{"image.source a path with ..", "vms:\n  vm1:\n    image: {source: /images/../a.qcow2}\n", "/vms/vm1/image/source"},
		{"image.target ending in .sha256", oneVM + "      target: a.sha256\n", "/vms/vm1/image/target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefused(t, c, tc.values, tc.msg)
		})
	}
}

// TestBlankDiskUpgrade: once the VM's disk exists (its PVC, seen by lookup under helm upgrade),
// cdrom can go and image.source stay empty: the installed disk boots, no CDROMS. Without the PVC
// the same values are refused.
func TestBlankDiskUpgrade(t *testing.T) {
	c := load(t)
	vals, err := ParseValues("vms:\n  vm1:\n    image: {source: \"\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	empty, err := NewCluster()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RenderUpgrade(c, rel, ns, vals, empty); err == nil || !strings.Contains(err.Error(), "vms.vm1.image.source is required") {
		t.Errorf("no PVC: %v, want image.source refused", err)
	}
	cluster, err := NewCluster(pvcObject("disk-rel-vm1-0", "10Gi", "", "Filesystem", "11274Mi", "11274Mi"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderUpgrade(c, rel, ns, vals, cluster)
	if err != nil {
		t.Fatal(err)
	}
	sts := out["berth/templates/statefulset.yaml"]
	if !strings.Contains(sts, "- name: IMG_SOURCE\n              value: \"\"\n") || !strings.Contains(sts, "- name: DISK_BLANK\n              value: \"true\"\n") || strings.Contains(sts, "CDROMS") {
		t.Errorf("StatefulSet: want IMG_SOURCE empty, DISK_BLANK true and no CDROMS:\n%s", sts)
	}
	if n := out["berth/templates/NOTES.txt"]; !strings.Contains(n, "(boots the disk an OS was installed on; watch:") || strings.Contains(n, "cdrom") {
		t.Errorf("NOTES:\n%s", n)
	}
}
