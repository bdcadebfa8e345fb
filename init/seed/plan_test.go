package seed

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/berth-vm/berth/common/golden"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

// TestBadInputs lists every input refused with exit code 2, and what the
// message must say.
func TestBadInputs(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		ud   string // user-data; "-" = none
		md   string // meta-data; "-" = none
		want []string
	}{
		{"meta-data is a list", nil, "-", "- a\n- b\n", []string{"METADATA=", "must be a YAML mapping", "not a list"}},
		{"meta-data is a string", nil, "-", "just words\n", []string{"METADATA=", "not a string"}},
		{"meta-data is invalid YAML", nil, "-", "a: b: c\n", []string{"METADATA=", "line 1, column 4"}},
		{"meta-data has two documents", nil, "-", "a: 1\n---\nb: 2\n", []string{"METADATA=", "second YAML document"}},
		{"meta-data instance-id is a list", nil, "-", "instance-id: [a, b]\n", []string{"METADATA=", "instance-id must be a string"}},
		{"meta-data hostname is a mapping", nil, "-", "local-hostname: {a: 1}\n", []string{"METADATA=", "local-hostname must be a string"}},
		{"meta-data key is malformed", nil, "-", "public-keys:\n  - " + keyEd + "\n  - ssh-rsa AAAAB3Nza\n", []string{"METADATA=", "public-keys[1] line 1"}},
		{"meta-data OpenStack key is malformed", nil, "-", "public_keys:\n  admin: not-a-key\n", []string{"METADATA=", "public_keys.admin line 1"}},
		{"meta-data key is a list of lists", nil, "-", "public-keys:\n  - [a]\n", []string{"METADATA=", "a key must be a string"}},
		{"meta-data has NaN", nil, "-", "x: .nan\n", []string{"METADATA=", "not a number JSON can hold"}},
		{"cloud-config bad mapping", nil, "#cloud-config\nusers:\n  - name: a\n   shell: /bin/sh\n", "-", []string{"USERDATA=", "invalid cloud-config YAML at line 4, column 4"}},
		{"cloud-config tab indent", nil, "#cloud-config\nruncmd:\n\t- ls\n", "-", []string{"USERDATA=", "line 3, column 1"}},
		{"cloud-config unclosed flow", nil, "#cloud-config\nruncmd:\n  - [ls, -l\n", "-", []string{"USERDATA=", "line 3"}},
		{"cloud-config unclosed quote", nil, "#cloud-config\na: \"x\nb: 1\n", "-", []string{"USERDATA=", "line 2"}},
		{"cloud-config is a list", nil, "#cloud-config\n- a\n- b\n", "-", []string{"USERDATA=", "line 2, column 1", "must be a mapping"}},
		{"cloud-config is a scalar", nil, "#cloud-config\nhello\n", "-", []string{"USERDATA=", "must be a mapping"}},
		{"cloud-config with a python tag", nil, "#cloud-config\nruncmd:\n  - !!python/object/apply:os.system [ls]\n", "-", []string{"USERDATA=", "line 3, column 5: tag !!python/object/apply:os.system"}},
		{"cloud-config tab after a key", nil, "#cloud-config\nhostname:\tweb\n", "-", []string{"USERDATA=", "line 2, column 10: a tab where"}},
		{"cloud-config unknown escape", nil, "#cloud-config\nruncmd:\n  - \"echo \\'hi\\'\"\n", "-", []string{"USERDATA=", "line 3, column 11: unknown escape"}},
		{"cloud-config comment glued to a block header", nil, "#cloud-config\nbootcmd:\n  - |#x\n    ls\n", "-", []string{"USERDATA=", "line 3, column 6"}},
		{"cloud-config list as a key", nil, "#cloud-config\n? [a, b]\n: c\n", "-", []string{"USERDATA=", "line 2, column 3: a mapping key that is itself"}},
		{"cloud-config two documents", nil, "#cloud-config\na: 1\n---\nb: 2\n", "-", []string{"USERDATA=", "second YAML document"}},
		{"cloud-config-archive bad YAML", nil, "#cloud-config-archive\n- {a: 1\n", "-", []string{"USERDATA=", "invalid cloud-config-archive YAML at line 2"}},
		{"cloud-config in another case after white space", nil, "\n  #Cloud-Config\na: b: c\n", "-", []string{"USERDATA=", "line 3, column 4"}},
		{"MIME part text/cloud-config base64", nil, mimeDoc("text/cloud-config", "base64", base64.StdEncoding.EncodeToString([]byte("#cloud-config\nruncmd:\n\t- ls\n"))), "-",
			[]string{"USERDATA=", "MIME part 2 (text/cloud-config): invalid cloud-config YAML at line 3, column 1"}},
		{"MIME part text/plain typed by its start", nil, mimeDoc("text/plain", "7bit", "#cloud-config\n- a\n"), "-",
			[]string{"USERDATA=", "MIME part 2 (text/plain): invalid cloud-config at line 2, column 1: the document must be a mapping"}},
		{"gzip cloud-config bad YAML", nil, string(gzipped(t, "#cloud-config\na: b: c\n")), "-", []string{"USERDATA=", "invalid gzip-compressed cloud-config YAML at line 2, column 4"}},
		{"SSH_AUTHORIZED_KEYS line 2 malformed", map[string]string{"SSH_AUTHORIZED_KEYS": keyEd + "\nssh-ed25519 AAAA\n"}, "-", "-", []string{"SSH_AUTHORIZED_KEYS=", "line 2 "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, tt.env)
			var in Inputs
			in.UserData = Source{Var: "USERDATA", Path: "/userdata"}
			in.MetaData = Source{Var: "METADATA", Path: "/metadata"}
			if tt.ud != "-" {
				in.UserData = src("USERDATA", tt.ud)
			}
			if tt.md != "-" {
				in.MetaData = src("METADATA", tt.md)
			}
			_, err := NewPlan(cfg, in)
			if !stage.IsBadInput(err) {
				t.Fatalf("err = %v, want bad input", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// mimeDoc is MIME multipart user-data: a valid shell script part, then the given part.
func mimeDoc(ctype, enc, body string) string {
	return "Content-Type: multipart/mixed; boundary=\"BB\"\nMIME-Version: 1.0\n\n" +
		"--BB\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho a: b: c\n" +
		"--BB\nContent-Type: " + ctype + "; charset=\"us-ascii\"\nContent-Transfer-Encoding: " + enc + "\n\n" + body + "\n--BB--\n"
}

// TestUserDataAccepted: what is not cloud-config is not checked.
func TestUserDataAccepted(t *testing.T) {
	for _, ud := range []string{
		"#!/bin/sh\necho a: b: c\n",
		"## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }\n",
		"#include\nhttps://example.com/a: b: c\n",
		"#cloud-boothook\na: b: c\n",
		"#cloud-config\n",
		"#cloud-config\n# only a comment\n",
		mimeDoc("text/cloud-config", "7bit", "#cloud-config\nruncmd: [ls]\n"),
		mimeDoc("text/x-shellscript", "7bit", "#!/bin/sh\n- a: b: c\n"),
		mimeDoc("text/cloud-config", "base64", "!!! not base64"), // left to cloud-init
		string([]byte{0x1f, 0x8b, 1, 2, 3}),                      // not whole gzip: left to cloud-init
	} {
		if err := CheckUserData(src("USERDATA", ud)); err != nil {
			t.Errorf("%q: %v", ud, err)
		}
	}
}

func TestFromEnvBad(t *testing.T) {
	// bad values tried: an unknown format, the label instead of the format,
	// a VM name that is not a DNS label
	for _, m := range []map[string]string{
		{"VM_NAME": "vm-0", "SEED_FORMAT": "iso"},
		{"VM_NAME": "vm-0", "SEED_FORMAT": "config-2"},
		{"VM_NAME": "VM_0"},
	} {
		if _, err := FromEnv(stage.MapEnv(m)); !stage.IsBadInput(err) {
			t.Errorf("%v: err = %v, want bad input", m, err)
		}
	}
}

func TestInstanceID(t *testing.T) {
	// python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "berth:vm/vm-0"))'
	if got, want := InstanceID("vm-0"), "9c0b2a17-641d-53be-8fad-cbf0d620c338"; got != want {
		t.Errorf("InstanceID(vm-0) = %s, want %s", got, want)
	}
	if InstanceID("vm-1") == InstanceID("vm-0") {
		t.Error("two names give the same id")
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		md       string
		id, host string
	}{
		{"-", InstanceID("vm-0"), "vm-0"},
		{"", InstanceID("vm-0"), "vm-0"},
		{"instance-id: iid-abc\n", "iid-abc", "vm-0"},
		{"uuid: 11111111-2222-3333-4444-555555555555\nhostname: h1\n", "11111111-2222-3333-4444-555555555555", "h1"},
		{"instance-id: a\nuuid: b\nlocal-hostname: l\nhostname: h\n", "a", "l"},
		{"instance-id: 42\n", "42", "vm-0"},
		{"instance-id: ''\n", InstanceID("vm-0"), "vm-0"},
	}
	for _, tt := range tests {
		in := Inputs{UserData: Source{Var: "USERDATA"}, MetaData: Source{Var: "METADATA"}}
		if tt.md != "-" {
			in.MetaData = src("METADATA", tt.md)
		}
		p, err := NewPlan(testConfig(t, nil), in)
		if err != nil {
			t.Fatalf("%q: %v", tt.md, err)
		}
		if p.InstanceID != tt.id || p.Hostname != tt.host {
			t.Errorf("%q: id %q host %q, want %q %q", tt.md, p.InstanceID, p.Hostname, tt.id, tt.host)
		}
	}
}

// goldenCases are the seeds whose ISO file trees are kept in testdata/golden.
var goldenCases = []struct {
	name string
	env  map[string]string
	ud   string // "-" = none
	md   string // "-" = none
}{
	{"configdrive-minimal", nil, "-", "-"},
	{"configdrive-full", map[string]string{"SSH_AUTHORIZED_KEYS": keyEd2 + "\n# comment\n" + keyEd + "\n"},
		"#cloud-config\npackages: [htop]\nruncmd:\n  - [touch, /tmp/berth]\n",
		"instance-id: iid-full\nlocal-hostname: web-1\npublic-keys:\n  - " + keyEd + "\nmeta:\n  role: web\navailability_zone: az1\n"},
	{"configdrive-openstack-keys", nil, "#!/bin/sh\necho hi\n",
		"uuid: 0f5c8f6e-0000-4000-8000-000000000001\nhostname: os-1\nname: os-vm\npublic_keys:\n  admin: " + keyEd + "\n  ops: " + keyEd2 + "\n"},
	{"nocloud-minimal", map[string]string{"SEED_FORMAT": "nocloud"}, "-", "-"},
	{"nocloud-full", map[string]string{"SEED_FORMAT": "nocloud", "SSH_AUTHORIZED_KEYS": keyEd2},
		"#cloud-config\nhostname: ignored-by-seed\n",
		"instance-id: iid-nc\nlocal-hostname: nc-1\npublic-keys: |\n  " + keyEd + "\nnetwork-interfaces: |\n  auto eth0\n"},
}

// dumpTree renders a file tree for the golden files: each path, size and
// content (base64-free, binary shown as %q).
func dumpTree(label string, files map[string][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "label: %s\n", label)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(&b, "\n== /%s (%d bytes)\n%s", p, len(files[p]), files[p])
		if n := len(files[p]); n > 0 && files[p][n-1] != '\n' {
			b.WriteString("\n(no newline at end)\n")
		}
	}
	return b.String()
}

func goldenPlan(t *testing.T, i int) *Plan {
	c := goldenCases[i]
	in := Inputs{UserData: Source{Var: "USERDATA"}, MetaData: Source{Var: "METADATA"}}
	if c.ud != "-" {
		in.UserData = src("USERDATA", c.ud)
	}
	if c.md != "-" {
		in.MetaData = src("METADATA", c.md)
	}
	p, err := NewPlan(testConfig(t, c.env), in)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return p
}

// TestGolden reads each seed ISO back with github.com/kdomanski/iso9660 and
// with isoinfo (Rock Ridge) and compares the file tree with the golden file.
func TestGolden(t *testing.T) {
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Fatal("isoinfo is missing: run ci/install-deps.sh")
	}
	for i, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			p := goldenPlan(t, i)
			label, files := readISO(t, p.Image)
			got := dumpTree(label, files)

			golden.Assert(t, filepath.Join("golden", c.name+".txt"), []byte(got))

			// isoinfo, an independent reader, sees the same names and bytes
			isoPath := filepath.Join(t.TempDir(), "seed.iso")
			if err := os.WriteFile(isoPath, p.Image, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("isoinfo", "-R", "-f", "-i", isoPath).Output()
			if err != nil {
				t.Fatalf("isoinfo -f: %v", err)
			}
			isoFiles := map[string][]byte{}
			for _, l := range strings.Fields(string(out)) {
				name := strings.TrimPrefix(l, "/")
				if name == "openstack" || name == "openstack/latest" {
					continue
				}
				data, err := exec.Command("isoinfo", "-R", "-i", isoPath, "-x", l).Output()
				if err != nil {
					t.Fatalf("isoinfo -x %s: %v", l, err)
				}
				isoFiles[name] = data
			}
			if d := dumpTree(label, isoFiles); d != got {
				t.Errorf("isoinfo reads another tree:\n%s", d)
			}
		})
	}
}

// TestMetaDataKept: the user's own meta-data keys survive, in both formats.
func TestMetaDataKept(t *testing.T) {
	p := goldenPlan(t, 1)
	_, files := readISO(t, p.Image)
	var md map[string]any
	if err := json.Unmarshal(files[ConfigDriveMetaData], &md); err != nil {
		t.Fatal(err)
	}
	if md["availability_zone"] != "az1" || md["meta"].(map[string]any)["role"] != "web" {
		t.Errorf("user keys lost: %v", md)
	}
	for _, k := range []string{"instance-id", "local-hostname", "public-keys"} {
		if _, ok := md[k]; ok {
			t.Errorf("NoCloud key %s left in meta_data.json", k)
		}
	}
}

func TestApplyIdempotent(t *testing.T) {
	p := goldenPlan(t, 1)
	dir := t.TempDir()
	p.Output = filepath.Join(dir, "seed.iso")
	changed, err := p.write()
	if err != nil || !changed {
		t.Fatalf("first apply: changed=%v err=%v", changed, err)
	}
	before, err := os.Stat(p.Output)
	if err != nil {
		t.Fatal(err)
	}
	changed, err = p.write()
	if err != nil || changed {
		t.Fatalf("second apply: changed=%v err=%v, want an untouched file", changed, err)
	}
	after, _ := os.Stat(p.Output)
	if !os.SameFile(before, after) {
		t.Error("second apply replaced the file")
	}
	// another seed replaces it, through a rename
	q := goldenPlan(t, 0)
	q.Output = p.Output
	if changed, err := q.write(); err != nil || !changed {
		t.Fatalf("apply of another seed: changed=%v err=%v", changed, err)
	}
	got, _ := os.ReadFile(p.Output)
	if !bytes.Equal(got, q.Image) {
		t.Error("seed.iso does not hold the new image")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	// an image built again from the same input is the same bytes
	if !bytes.Equal(goldenPlan(t, 1).Image, p.Image) {
		t.Error("the same input gave different bytes")
	}
}

func TestPrint(t *testing.T) {
	p := goldenPlan(t, 1)
	var b bytes.Buffer
	p.Print(&b)
	for _, w := range []string{"configdrive (volume label config-2)", "instance id: iid-full (from meta-data instance-id)",
		"hostname:    web-1", "ssh keys:    2", "SHA256:", "/openstack/latest/meta_data.json", "/openstack/latest/user_data"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("plan lacks %q:\n%s", w, b.String())
		}
	}
}
