package isowrite

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berth-vm/berth/init/seed/internal/isoread"

	"github.com/berth-vm/berth/common/roottest"
)

// sample is a tree with what a seed needs and what stresses the layout: names
// that are not ISO 9660 names, nesting, an empty file, files over a sector.
func sample() []File {
	files := []File{
		{Path: "openstack/latest/meta_data.json", Data: []byte(`{"uuid": "x"}` + "\n")},
		{Path: "openstack/latest/user_data", Data: []byte("#cloud-config\n")},
		{Path: "meta-data", Data: []byte("instance-id: a\n")},
		{Path: "user-data", Data: nil},
		{Path: "big.bin", Data: bytes.Repeat([]byte("0123456789abcdef"), 1000)},
		{Path: "exact", Data: bytes.Repeat([]byte{7}, SectorSize)},
		{Path: "user_data", Data: []byte("same ISO 9660 name as user-data")},
		{Path: "UPPER.Case.Name", Data: []byte("upper")},
	}
	return files
}

// sampleMany adds a directory whose records fill more than one sector.
// github.com/kdomanski/iso9660's reader cannot read those (it reuses its
// sector buffer under the system use fields it already parsed, and the names
// of the first sector's entries are lost), so only the external readers get it.
func sampleMany() []File {
	files := sample()
	for i := 0; i < 60; i++ {
		files = append(files, File{Path: fmt.Sprintf("many/a-long-file-name-number-%03d.txt", i), Data: []byte(fmt.Sprint(i))})
	}
	return files
}

// readBack reads every file of an image with github.com/kdomanski/iso9660
// (which reads Rock Ridge names), keyed by path.
func readBack(t testing.TB, img []byte) (string, map[string][]byte) {
	t.Helper()
	im, err := isoread.Read(img)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range im.Modes {
		if mode.Perm() != 0o444 {
			t.Errorf("%s: mode %v, want r--r--r--", p, mode)
		}
	}
	return im.Label, im.Files
}

func want(files []File) map[string][]byte {
	m := map[string][]byte{}
	for _, f := range files {
		d := f.Data
		if d == nil {
			d = []byte{}
		}
		m[f.Path] = d
	}
	return m
}

func compare(t testing.TB, got, want map[string][]byte) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from the image (got %v)", p, keysOf(got))
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: %d bytes differ from the %d written", p, len(g), len(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: in the image but never written", p)
		}
	}
}

func keysOf(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestReadBackWithLibrary(t *testing.T) {
	img, err := Build("config-2", sample())
	if err != nil {
		t.Fatal(err)
	}
	label, got := readBack(t, img)
	if label != "config-2" {
		t.Errorf("label %q, want config-2", label)
	}
	compare(t, got, want(sample()))
	if l, err := Label(img); err != nil || l != "config-2" {
		t.Errorf("Label() = %q, %v", l, err)
	}
}

func TestDeterministic(t *testing.T) {
	a, err := Build("cidata", sampleMany())
	if err != nil {
		t.Fatal(err)
	}
	// the same files in another order give the same image
	files := sampleMany()
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	b, err := Build("cidata", files)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same files differ")
	}
	if len(a)%SectorSize != 0 {
		t.Errorf("image is %d bytes, not whole sectors", len(a))
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		label string
		files []File
	}{
		{"empty label", "", nil},
		{"long label", strings.Repeat("x", 33), nil},
		{"label with newline", "a\nb", nil},
		{"empty component", "l", []File{{Path: "a//b"}}},
		{"absolute", "l", []File{{Path: "/a"}}},
		{"dot dot", "l", []File{{Path: "../a"}}},
		{"dot", "l", []File{{Path: "./a"}}},
		{"long name", "l", []File{{Path: strings.Repeat("n", MaxNameLen+1)}}},
		{"nul", "l", []File{{Path: "a\x00b"}}},
		{"duplicate", "l", []File{{Path: "a"}, {Path: "a"}}},
		{"file then dir", "l", []File{{Path: "a"}, {Path: "a/b"}}},
		{"dir then file", "l", []File{{Path: "a/b"}, {Path: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(tt.label, tt.files); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestExternalReaders reads the image with isoinfo (Rock Ridge listing and
// volume info) and extracts it with xorriso: independent implementations.
func TestExternalReaders(t *testing.T) {
	for _, tool := range []string{"isoinfo", "xorriso"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run ci/install-deps.sh", tool)
		}
	}
	dir := t.TempDir()
	isoPath := filepath.Join(dir, "t.iso")
	img, err := Build("config-2", sampleMany())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(isoPath, img, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("isoinfo", "-d", "-i", isoPath).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -d: %v\n%s", err, out)
	}
	for _, w := range []string{"Volume id: config-2\n", "Rock Ridge signatures version 1 found", "Joliet with UCS level 3 found", "Logical block size is: 2048"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("isoinfo -d lacks %q:\n%s", w, out)
		}
	}
	out, err = exec.Command("isoinfo", "-R", "-f", "-i", isoPath).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -R -f: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		listed[l] = true
	}
	for _, f := range sampleMany() {
		if !listed["/"+f.Path] {
			t.Errorf("isoinfo -R -f does not list /%s", f.Path)
		}
	}
	// the same bytes through isoinfo's own extraction
	for _, f := range sampleMany()[:4] {
		got, err := exec.Command("isoinfo", "-R", "-i", isoPath, "-x", "/"+f.Path).Output()
		if err != nil {
			t.Fatalf("isoinfo -x %s: %v", f.Path, err)
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("isoinfo -x /%s = %q, want %q", f.Path, got, f.Data)
		}
	}

	// the Joliet tree, as Windows reads it: the same names and bytes
	out, err = exec.Command("isoinfo", "-J", "-f", "-i", isoPath).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -J -f: %v\n%s", err, out)
	}
	listed = map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		listed[l] = true
	}
	for _, f := range sampleMany() {
		if !listed["/"+f.Path] {
			t.Errorf("isoinfo -J -f does not list /%s", f.Path)
		}
	}

	for _, mode := range [][]string{
		{"-rockridge", "on", "-joliet", "off"},
		{"-rockridge", "off", "-joliet", "on"},
	} {
		tree := filepath.Join(dir, "tree"+mode[1])
		args := append(append([]string{}, mode...), "-osirrox", "on", "-indev", isoPath, "-extract", "/", tree)
		if out, err := exec.Command("xorriso", args...).CombinedOutput(); err != nil {
			t.Fatalf("xorriso %v extract: %v\n%s", mode, err, out)
		}
		compare(t, readTree(t, tree), want(sampleMany()))
	}
}

func TestJolietNames(t *testing.T) {
	ucs2 := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r>>8), byte(r))
		}
		return string(b)
	}
	tests := []struct {
		name string
		n    int
		want string
	}{
		{"meta_data.json", 0, ucs2("meta_data.json")},
		{"user-data", 2, ucs2("user-data_2")},
		{"a:b*c?d;e\\f\x01", 0, ucs2("a_b_c_d_e_f_")},
		{strings.Repeat("x", 70), 0, ucs2(strings.Repeat("x", 64))},
		{strings.Repeat("x", 70), 11, ucs2(strings.Repeat("x", 61) + "_11")},
		{"é", 0, "\x00\xe9"},
		{strings.Repeat("x", 63) + "😀", 0, ucs2(strings.Repeat("x", 63))}, // a surrogate pair is not split
	}
	for _, tt := range tests {
		if got := string(jolietName(tt.name, false, tt.n)); got != tt.want {
			t.Errorf("jolietName(%q, %d) = %q, want %q", tt.name, tt.n, got, tt.want)
		}
	}
}

func readTree(t testing.TB, root string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestLoopMount mounts the image with the kernel's own iso9660 driver, the
// driver the guest uses for /dev/sr0. It needs root and a kernel with
// iso9660; this machine's kernel (a microVM kernel) has none, so the real
// proof is the guest boot in the vmm end-to-end test.
func TestLoopMount(t *testing.T) {
	roottest.Require(t)
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(fs), "iso9660") {
		t.Skip("this kernel has no iso9660 driver (see /proc/filesystems); the guest boot test covers the kernel reader")
	}
	dir := t.TempDir()
	isoPath := filepath.Join(dir, "t.iso")
	img, err := Build("config-2", sampleMany())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(isoPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "iso9660", "-o", "loop,ro", isoPath, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	compare(t, readTree(t, mnt), want(sampleMany()))
}

// FuzzBuild: any file contents under any valid names read back unchanged, and
// nothing panics.
func FuzzBuild(f *testing.F) {
	f.Add("user-data", []byte("#cloud-config\n"), "x/meta_data.json", []byte("{}"))
	f.Add("a", []byte{}, "b", bytes.Repeat([]byte{0}, 5000))
	f.Add("Same.Name", []byte("1"), "same.name", []byte("2"))
	f.Fuzz(func(t *testing.T, p1 string, d1 []byte, p2 string, d2 []byte) {
		files := []File{{Path: p1, Data: d1}, {Path: p2, Data: d2}}
		img, err := Build("cidata", files)
		if err != nil {
			return // bad names are refused, never written
		}
		_, got := readBack(t, img)
		compare(t, got, want(files))
	})
}
