package charttest

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
)

var (
	helperDefine  = regexp.MustCompile(`define "(berth\.[^"]+)"`)
	helperInclude = regexp.MustCompile(`include "(berth\.[^"]+)"`)
	// A helper's name wherever it is written: an include, a define or a comment.
	helperName = regexp.MustCompile(`\bberth\.[A-Za-z][-A-Za-z0-9.]*[A-Za-z0-9]`)
)

// TestHelperNames: every helper the templates name (in an include or a comment) is defined, and
// every helper defined is included somewhere.
func TestHelperNames(t *testing.T) {
	var files []string
	err := filepath.WalkDir(filepath.Join(ChartDir(), "templates"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defined, included := map[string]bool{}, map[string]bool{}
	named := map[string][]string{} // helper name → the files naming it
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range helperDefine.FindAllSubmatch(b, -1) {
			defined[string(m[1])] = true
		}
		for _, m := range helperInclude.FindAllSubmatch(b, -1) {
			included[string(m[1])] = true
		}
		rel, _ := filepath.Rel(ChartDir(), f)
		for _, m := range helperName.FindAll(b, -1) {
			named[string(m)] = append(named[string(m)], rel)
		}
	}
	if len(defined) == 0 {
		t.Fatal("no helper defined in chart/templates")
	}
	var names []string
	for n := range named {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !defined[n] {
			t.Errorf("%s names the helper %s, which no template defines", named[n][0], n)
		}
	}
	for n := range defined {
		if !included[n] {
			t.Errorf("the helper %s is defined but never included", n)
		}
	}
}
