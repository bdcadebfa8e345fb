// Package host is what the driver does to the node: read the mount table, attach, refresh and
// detach loop devices, mount and unmount, and make, measure and grow ext4 filesystems, each by
// the same tool an administrator would run (losetup, mount, mkfs.ext4, resize2fs).
package host

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo: the path inside the mounted filesystem (Root),
// where it is mounted (Point), the filesystem type and the mount source.
type Mount struct {
	Root   string
	Point  string
	FSType string
	Source string
}

// ParseMountinfo reads the mountinfo format of proc(5): "id parent major:minor root point
// options [optional fields...] - fstype source superoptions", paths with octal escapes (\040).
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("mountinfo line %d: %d fields, no \"- fstype source\": %q", n, len(f), sc.Text())
		}
		mounts = append(mounts, Mount{
			Root:   unescape(f[3]),
			Point:  unescape(f[4]),
			FSType: f[sep+1],
			Source: unescape(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return mounts, nil
}

// unescape undoes the kernel's octal escapes of space, tab, newline and backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mounts is the calling process's mount table.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// MountedAt reports whether something is mounted at point (an exact path, not resolved).
func MountedAt(mounts []Mount, point string) bool {
	for _, m := range mounts {
		if m.Point == point {
			return true
		}
	}
	return false
}

// Users are the mounts that use the loop device dev (/dev/loopN): mounted from it, or bind
// mounts of its device node (root "/loopN" of a devtmpfs).
func Users(mounts []Mount, dev string) []Mount {
	var users []Mount
	node := "/" + strings.TrimPrefix(dev, "/dev/")
	for _, m := range mounts {
		if m.Source == dev || (m.Root == node && m.FSType == "devtmpfs") {
			users = append(users, m)
		}
	}
	return users
}
