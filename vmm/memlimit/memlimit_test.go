package memlimit

import (
	"strings"
	"testing"
	"testing/fstest"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

const hybrid = "9:name=systemd:/\n4:memory:/kubepods/pod1/ctr\n1:cpu:/\n0::/\n"

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fs     fstest.MapFS
		want   Limit
		errHas string
	}{
		{"v2 with a limit", fstest.MapFS{
			"proc/self/cgroup":                           file("0::/kubepods/pod1/ctr\n"),
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": file("805306368\n"),
		}, Limit{805306368, "/sys/fs/cgroup/kubepods/pod1/ctr/memory.max"}, ""},
		{"v2 max", fstest.MapFS{
			"proc/self/cgroup":           file("0::/a\n"),
			"sys/fs/cgroup/a/memory.max": file("max\n"),
		}, Limit{}, ""},
		{"v2 the pod's limit is below the container's", fstest.MapFS{
			"proc/self/cgroup":                 file("0::/pod/ctr\n"),
			"sys/fs/cgroup/pod/ctr/memory.max": file("max\n"),
			"sys/fs/cgroup/pod/memory.max":     file("536870912\n"),
		}, Limit{536870912, "/sys/fs/cgroup/pod/memory.max"}, ""},
		{"v2 in a cgroup namespace: the root is the container", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("1073741824\n"),
		}, Limit{1 << 30, "/sys/fs/cgroup/memory.max"}, ""},
		{"v1 hybrid, the path seen", fstest.MapFS{
			"proc/self/cgroup": file(hybrid),
			"sys/fs/cgroup/memory/kubepods/pod1/ctr/memory.limit_in_bytes": file("805306368\n"),
			"sys/fs/cgroup/memory/kubepods/pod1/memory.limit_in_bytes":     file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                   file("9223372036854771712\n"),
		}, Limit{805306368, "/sys/fs/cgroup/memory/kubepods/pod1/ctr/memory.limit_in_bytes"}, ""},
		{"v1 without a cgroup namespace: the container's cgroup at the mount's root", fstest.MapFS{
			"proc/self/cgroup":                           file(hybrid),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("805306368\n"),
		}, Limit{805306368, "/sys/fs/cgroup/memory/memory.limit_in_bytes"}, ""},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup": file("4:memory:/x\n"),
			"sys/fs/cgroup/memory/x/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, Limit{}, ""},
		{"no memory controller", fstest.MapFS{
			"proc/self/cgroup":                 file("0::/x\n"),
			"sys/fs/cgroup/x/cgroup.procs":     file(""),
			"sys/fs/cgroup/unified/memory.max": file("1\n"),
		}, Limit{}, "no memory controller"},
		{"no cgroup file", fstest.MapFS{}, Limit{}, "read /proc/self/cgroup"},
		{"garbage in the limit", fstest.MapFS{
			"proc/self/cgroup":           file("0::/a\n"),
			"sys/fs/cgroup/a/memory.max": file("lots\n"),
		}, Limit{}, `limit "lots"`},
		{"garbage in the cgroup file", fstest.MapFS{
			"proc/self/cgroup": file("nonsense\n"),
		}, Limit{}, "want id:controllers:/path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.fs, "proc/self/cgroup", "sys/fs/cgroup")
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]uint64{"max\n": 0, "1048576\n": 1 << 20, "9223372036854771712": 0, "4611686018427387903": 4611686018427387903} {
		if got, err := ParseLimit(in); err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1G", "max max"} {
		if _, err := ParseLimit(bad); err == nil {
			t.Errorf("ParseLimit(%q): no error", bad)
		}
	}
}

func FuzzParseCgroupFile(f *testing.F) {
	f.Add(hybrid)
	f.Add("0::/\n")
	f.Add("0::/a/../b\n")
	f.Fuzz(func(t *testing.T, s string) {
		v2, v1, err := ParseCgroupFile(s)
		if err != nil {
			return
		}
		for _, p := range []string{v2, v1} {
			if p != "" && (!strings.HasPrefix(p, "/") || strings.Contains(p+"/", "/../")) {
				t.Errorf("path %q escapes the mount", p)
			}
		}
	})
}
