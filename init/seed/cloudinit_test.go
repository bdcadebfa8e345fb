package seed

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The tests in this file run Debian's real cloud-init (python3-cloudinit,
// installed by ci/install-deps.sh) on our seeds: the ISO is extracted with
// xorriso (Rock Ridge names, as the guest kernel shows them) and
// testdata/cloudinit_read.py runs the ConfigDrive or NoCloud datasource's own
// get_data() on the tree.

const systemPython = "/usr/bin/python3" // cloud-init lives in Debian's python, not in a pyenv one

type cloudInitView struct {
	Found        bool           `json:"found"`
	Datasource   string         `json:"datasource"`
	InstanceID   string         `json:"instance_id"`
	Hostname     string         `json:"hostname"`
	PublicKeys   []string       `json:"public_keys"`
	UserDataB64  string         `json:"userdata_b64"`
	UserDataPart []string       `json:"userdata_parts"`
	MetaData     map[string]any `json:"metadata"`
}

func needCloudInit(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(systemPython, "-c", "import cloudinit").CombinedOutput(); err != nil {
		t.Fatalf("Debian's cloud-init is missing (run ci/install-deps.sh): %v\n%s", err, out)
	}
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Fatal("xorriso is missing: run ci/install-deps.sh")
	}
}

// extract writes the image and extracts it with xorriso into a new directory.
func extract(t *testing.T, img []byte) string {
	t.Helper()
	dir := t.TempDir()
	isoPath := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(isoPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", isoPath, "-extract", "/", tree).CombinedOutput(); err != nil {
		t.Fatalf("xorriso extract: %v\n%s", err, out)
	}
	return tree
}

// cloudInitReadAll runs cloudinit_read.py once on FORMAT TREE pairs.
func cloudInitReadAll(t *testing.T, pairs []string) []cloudInitView {
	t.Helper()
	cmd := exec.Command(systemPython, append([]string{filepath.Join("testdata", "cloudinit_read.py")}, pairs...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var views []cloudInitView
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var v cloudInitView
		if jerr := dec.Decode(&v); jerr != nil {
			t.Fatalf("cloudinit_read.py: %v / %v\nstdout: %s\nstderr: %s", err, jerr, out, stderr.String())
		}
		views = append(views, v)
	}
	if len(views) != len(pairs)/2 {
		t.Fatalf("cloudinit_read.py: %d answers for %d seeds (%v)\nstdout: %s\nstderr: %s", len(views), len(pairs)/2, err, out, stderr.String())
	}
	return views
}

func multipartUserData(t *testing.T) []byte {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.SetBoundary("berth-boundary"); err != nil {
		t.Fatal(err)
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"berth-boundary\"\nMIME-Version: 1.0\n\n")
	for _, part := range []struct{ typ, body string }{
		{"text/cloud-config", "#cloud-config\nruncmd:\n  - [touch, /tmp/from-mime]\n"},
		{"text/x-shellscript", "#!/bin/sh\necho mime\n"},
	} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.typ+"; charset=\"us-ascii\"")
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write([]byte(part.body))
	}
	w.Close()
	return b.Bytes()
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCloudInitReadsSeed(t *testing.T) {
	needCloudInit(t)
	userData := []struct {
		name  string
		data  []byte // nil: no user-data
		parts []string
	}{
		{"none", nil, nil},
		{"cloud-config", []byte("#cloud-config\npackages: [htop]\nwrite_files:\n  - path: /etc/berth\n    content: \"é ✓\\n\"\n"), []string{"text/cloud-config"}},
		{"cloud-config-any-case", []byte("\n  #Cloud-Config\nruncmd: [ls]\n"), []string{"text/cloud-config"}},
		{"script", []byte("#!/bin/sh\necho hello > /tmp/hello\n"), []string{"text/x-shellscript"}},
		{"mime-multipart", multipartUserData(t), []string{"text/cloud-config", "text/x-shellscript"}},
		{"gzip", gzipped(t, "#cloud-config\nruncmd:\n  - [touch, /tmp/gz]\n"), []string{"text/cloud-config"}},
	}
	metaData := []struct {
		name     string
		md       string // "-": none
		id, host string
		keys     []string
	}{
		{"derived", "-", InstanceID("vm-0"), "vm-0", []string{keyEd2}},
		{"nocloud-style", "instance-id: iid-7\nlocal-hostname: host-7\npublic-keys:\n  - " + keyEd + "\n", "iid-7", "host-7", []string{keyEd, keyEd2}},
		{"openstack-style", "uuid: u-8\nhostname: host-8\npublic_keys:\n  admin: " + keyEd + "\n", "u-8", "host-8", []string{keyEd, keyEd2}},
	}
	type seedCase struct {
		name  string
		plan  *Plan
		ud    []byte
		parts []string
		id    string
		host  string
		keys  []string
	}
	var cases []seedCase
	var pairs []string
	for _, format := range []string{FormatConfigDrive, FormatNoCloud} {
		for _, ud := range userData {
			for _, md := range metaData {
				in := Inputs{UserData: Source{Var: "USERDATA"}, MetaData: Source{Var: "METADATA"}}
				if ud.data != nil {
					in.UserData = src("USERDATA", string(ud.data))
				}
				if md.md != "-" {
					in.MetaData = src("METADATA", md.md)
				}
				p, err := NewPlan(testConfig(t, map[string]string{"SEED_FORMAT": format, "SSH_AUTHORIZED_KEYS": keyEd2}), in)
				if err != nil {
					t.Fatalf("%s/%s/%s: %v", format, ud.name, md.name, err)
				}
				cases = append(cases, seedCase{format + "/" + ud.name + "/" + md.name, p, ud.data, ud.parts, md.id, md.host, md.keys})
				pairs = append(pairs, format, extract(t, p.Image))
			}
		}
	}
	views := cloudInitReadAll(t, pairs) // one python process for all: cloud-init's imports are slow
	for i, c := range cases {
		v := views[i]
		t.Run(c.name, func(t *testing.T) {
			if !v.Found {
				t.Fatalf("cloud-init found no %s data", c.plan.Format)
			}
			wantDS := map[string]string{FormatConfigDrive: "DataSourceConfigDrive", FormatNoCloud: "DataSourceNoCloud"}[c.plan.Format]
			if !strings.HasPrefix(v.Datasource, wantDS) {
				t.Errorf("datasource %q, want %s", v.Datasource, wantDS)
			}
			if v.InstanceID != c.id {
				t.Errorf("cloud-init instance id %q, want %q", v.InstanceID, c.id)
			}
			if v.Hostname != c.host {
				t.Errorf("cloud-init hostname %q, want %q", v.Hostname, c.host)
			}
			got := append([]string(nil), v.PublicKeys...)
			want := append([]string(nil), c.keys...)
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("cloud-init keys %q, want %q", got, want)
			}
			raw, _ := base64.StdEncoding.DecodeString(v.UserDataB64)
			if !bytes.Equal(raw, c.ud) {
				t.Errorf("cloud-init user-data %q, want %q", raw, c.ud)
			}
			if c.parts != nil && strings.Join(v.UserDataPart, ",") != strings.Join(c.parts, ",") {
				t.Errorf("cloud-init user-data parts %v, want %v", v.UserDataPart, c.parts)
			}
		})
	}
}

// TestNoCloudNeedsUserDataFile shows why a NoCloud seed always holds a
// user-data file: without one, cloud-init's NoCloud reader ignores the seed.
func TestNoCloudNeedsUserDataFile(t *testing.T) {
	needCloudInit(t)
	p, err := NewPlan(testConfig(t, map[string]string{"SEED_FORMAT": "nocloud"}), Inputs{UserData: Source{Var: "USERDATA"}, MetaData: Source{Var: "METADATA"}})
	if err != nil {
		t.Fatal(err)
	}
	tree := extract(t, p.Image)
	without := extract(t, p.Image)
	if err := os.Remove(filepath.Join(without, NoCloudUserData)); err != nil {
		t.Fatal(err)
	}
	views := cloudInitReadAll(t, []string{FormatNoCloud, tree, FormatNoCloud, without})
	if !views[0].Found {
		t.Fatal("cloud-init ignores our seed")
	}
	if views[1].Found {
		t.Fatal("cloud-init took a seed without user-data: the empty user-data file is not needed")
	}
}

// TestCloudConfigAgreesWithCloudInit: what seed-iso accepts as cloud-config,
// `cloud-init schema --config-file` accepts; what it refuses as invalid YAML,
// cloud-init cannot load either (and reports the same line). One known
// difference: a bare "#cloud-config" line is accepted by seed-iso (cloud-init
// boots with it, it is empty configuration) while the schema command calls it
// "not a YAML dict".
func TestCloudConfigAgreesWithCloudInit(t *testing.T) {
	needCloudInit(t)
	if _, err := exec.LookPath("cloud-init"); err != nil {
		t.Fatal("cloud-init is missing: run ci/install-deps.sh")
	}
	tests := []struct {
		doc      string
		valid    bool
		position string // PyYAML's "line L, column C" of the problem, when refused
	}{
		{"#cloud-config\npackages: [htop]\nruncmd:\n  - [touch, /tmp/berth]\n", true, ""},
		{"#cloud-config\nusers:\n  - default\n  - name: ops\n    shell: /bin/bash\n    sudo: ALL=(ALL) NOPASSWD:ALL\n", true, ""},
		{"#cloud-config\nwrite_files:\n  - path: /x\n    content: |\n      a: b: c\n      \t tabs inside a block are text\n", true, ""},
		{"#cloud-config\nusers:\n  - name: a\n   shell: /bin/sh\n", false, "line 4, column 4"},
		{"#cloud-config\nruncmd:\n\t- ls\n", false, "line 3, column 1"},
		{"#cloud-config\nfinal_message: \"unclosed\nbootcmd: [ls]\n", false, ""},
		{"#cloud-config\nruncmd:\n  - [ls, -l\n", false, ""},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		err := CheckUserData(src("USERDATA", tt.doc))
		if (err == nil) != tt.valid {
			t.Errorf("%q: seed-iso err = %v, want valid=%v", tt.doc, err, tt.valid)
		}
		f := writeFile(t, dir, "cc"+string(rune('a'+i))+".yaml", []byte(tt.doc))
		out, cerr := exec.Command("cloud-init", "schema", "--config-file", f).CombinedOutput()
		if (cerr == nil) != tt.valid {
			t.Errorf("%q: cloud-init schema err = %v, want valid=%v\n%s", tt.doc, cerr, tt.valid, out)
		}
		if !tt.valid && !strings.Contains(string(out), "not valid yaml") {
			t.Errorf("%q: cloud-init refuses it for another reason than YAML:\n%s", tt.doc, out)
		}
		if tt.position != "" && (err == nil || !strings.Contains(err.Error(), tt.position) || !strings.Contains(string(out), tt.position)) {
			t.Errorf("%q: position %q: seed-iso says %v; cloud-init says\n%s", tt.doc, tt.position, err, out)
		}
	}
}

// TestGoldenCloudConfigIsValid: the cloud-config of the golden seeds passes
// cloud-init's own schema check.
func TestGoldenCloudConfigIsValid(t *testing.T) {
	needCloudInit(t)
	dir := t.TempDir()
	for _, c := range goldenCases {
		if !strings.HasPrefix(c.ud, "#cloud-config") {
			continue
		}
		f := writeFile(t, dir, c.name+".yaml", []byte(c.ud))
		if out, err := exec.Command("cloud-init", "schema", "--config-file", f).CombinedOutput(); err != nil {
			t.Errorf("%s: cloud-init schema: %v\n%s", c.name, err, out)
		}
	}
}
