// Package memlimit finds the memory limit of the cgroup vmm runs in: the
// container's limit (the pod's resources.limits.memory), which QEMU's memory
// must fit or the kernel kills it.
//
// cgroup v2: memory.max of /proc/self/cgroup's "0::" path under the cgroup
// mount ("max": no limit). cgroup v1 (still what some nodes run, the CI
// machines among them): memory.limit_in_bytes of the "memory" controller's
// path under <mount>/memory (a value near 2^63: no limit). A container without
// a cgroup namespace sees its own cgroup at the mount's root, not at the path
// /proc/self/cgroup names: then the root's file counts. The limit is the least
// of the cgroup's and its ancestors' that can be seen.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Limit is what Read found.
type Limit struct {
	Bytes uint64 // the limit; 0: none
	File  string // the file the limit is from ("" when none was set)
}

// NoLimitV1 is the least memory.limit_in_bytes cgroup v1 means as "no limit":
// unlimited reads as 2^63 rounded down to a page, and nothing real is near it.
const NoLimitV1 = 1 << 62

// Self reads the memory limit of vmm's own cgroup on this machine.
func Self() (Limit, error) { return Read(os.DirFS("/"), "proc/self/cgroup", "sys/fs/cgroup") }

// Read finds the limit for the cgroup file cgroupFile (the format of
// /proc/self/cgroup) with the cgroup mount at mount, both in fsys.
func Read(fsys fs.FS, cgroupFile, mount string) (Limit, error) {
	b, err := fs.ReadFile(fsys, cgroupFile)
	if err != nil {
		return Limit{}, fmt.Errorf("read /%s: %w", cgroupFile, err)
	}
	v2, v1, err := ParseCgroupFile(string(b))
	if err != nil {
		return Limit{}, fmt.Errorf("/%s: %w", cgroupFile, err)
	}
	// v2 first: on a hybrid host (v2 mounted, memory on v1) the v2 path has no memory.max.
	if v2 != "" {
		if l, ok, err := least(fsys, mount, v2, "memory.max"); ok || err != nil {
			return l, err
		}
	}
	if v1 != "" {
		if l, ok, err := least(fsys, path.Join(mount, "memory"), v1, "memory.limit_in_bytes"); ok || err != nil {
			return l, err
		}
	}
	return Limit{}, fmt.Errorf("no memory controller found for /%s (v2 path %q, v1 path %q) under /%s", cgroupFile, v2, v1, mount)
}

// least reads file in the cgroup at cg under root and in each ancestor up to
// root, and returns the least limit. ok is false when the cgroup's own file
// is neither at cg nor at root (no such controller here).
func least(fsys fs.FS, root, cg, file string) (Limit, bool, error) {
	dir := path.Join(root, cg)
	if _, err := fs.Stat(fsys, path.Join(dir, file)); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return Limit{}, false, fmt.Errorf("stat /%s: %w", path.Join(dir, file), err)
		}
		dir = root // no cgroup namespace: the container's cgroup is the mount's root
		if _, err := fs.Stat(fsys, path.Join(dir, file)); err != nil {
			return Limit{}, false, nil
		}
	}
	var best Limit
	for {
		f := path.Join(dir, file)
		b, err := fs.ReadFile(fsys, f)
		switch {
		case errors.Is(err, fs.ErrNotExist): // the root cgroup has no limit file
		case err != nil:
			return Limit{}, false, fmt.Errorf("read /%s: %w", f, err)
		default:
			n, err := ParseLimit(string(b))
			if err != nil {
				return Limit{}, false, fmt.Errorf("/%s: %w", f, err)
			}
			if n != 0 && (best.Bytes == 0 || n < best.Bytes) {
				best = Limit{Bytes: n, File: "/" + f}
			}
		}
		if dir == root || !strings.HasPrefix(dir, root+"/") {
			return best, true, nil
		}
		dir = path.Dir(dir)
	}
}

// ParseCgroupFile returns the v2 path (the "0::" line) and the v1 memory
// controller's path of a /proc/<pid>/cgroup file; "" for one not there.
func ParseCgroupFile(s string) (v2, v1 string, err error) {
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, p, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			return "", "", fmt.Errorf("line %q: want id:controllers:/path", line)
		}
		if id == "0" && ctrls == "" {
			v2 = p
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == "memory" {
				v1 = p
			}
		}
	}
	return v2, v1, nil
}

// ParseLimit reads a limit file: "max" (v2) or a number of bytes, NoLimitV1
// and above meaning none. 0 is "no limit".
func ParseLimit(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("limit %q: want max or a number of bytes", t)
	}
	if n >= NoLimitV1 {
		return 0, nil
	}
	return n, nil
}
