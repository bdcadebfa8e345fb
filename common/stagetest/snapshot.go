package stagetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Snapshot describes every entry under the roots by its path: type and mode,
// owner, size, a regular file's sha256, a symlink's target. It follows no
// symlink and opens nothing but regular files (a FIFO is never opened).
func Snapshot(t testing.TB, roots ...string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				snap[path] = "error " + err.Error()
				return nil
			}
			fi, err := os.Lstat(path)
			if err != nil {
				snap[path] = "error " + err.Error()
				return nil
			}
			st := fi.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%v uid=%d size=%d", fi.Mode(), st.Uid, fi.Size())
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(path)
				desc += " -> " + target
			case fi.Mode().IsRegular():
				desc += " sha256=" + FileSum(path)
			}
			snap[path] = desc
			return nil
		})
	}
	return snap
}

// FileSum is the sha256 of the file at path in hex, or why it is unreadable.
func FileSum(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// DiffSnapshots lists what differs from before to after, one entry a line
// (removed, changed, created), sorted; "" when nothing did.
func DiffSnapshots(before, after map[string]string) string {
	var out []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			out = append(out, "removed "+k+": "+v)
		} else if v != w {
			out = append(out, "changed "+k+": "+v+" => "+w)
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			out = append(out, "created "+k+": "+v)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
