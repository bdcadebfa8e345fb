package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		required, limit, want int64
		err                   error
	}{
		{0, 0, DefaultSize, nil},
		{0, 100 * MiB, 100 * MiB, nil},
		{1, 0, MiB, nil},
		{MiB, 0, MiB, nil},
		{MiB + 1, 0, 2 * MiB, nil},
		{10*MiB + 1, 10*MiB + 4096, 10*MiB + 4096, nil}, // the MiB would pass the limit: 4 KiB
		{10*MiB + 1, 10*MiB + 100, 0, ErrRange},         // even 4 KiB passes it
		{-1, 0, 0, ErrRange},
	} {
		got, err := Size(tc.required, tc.limit)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Size(%d, %d) = %d, %v; want %d, %v", tc.required, tc.limit, got, err, tc.want, tc.err)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{
		"pvc-0b4c2c4e-6c1b-4a0e-9d7e-1f3e5a7b9c11": true, "a": true, "a.b-c": true,
		"": false, ".": false, "..": false, "-a": false, "A": false, "a/b": false, "../x": false, "a b": false,
	} {
		if err := ValidID(id); (err == nil) != ok {
			t.Errorf("ValidID(%q) = %v, want ok %v", id, err, ok)
		}
	}
}

// TestBlockLifecycle needs no root: a Block volume is a sparse file only.
func TestBlockLifecycle(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "volumes")}
	ctx := context.Background()
	v, err := s.Create(ctx, "pvc-1", Block, 8*MiB, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != 8*MiB || v.Kind != Block || v.Path != filepath.Join(s.Dir, "pvc-1.block") {
		t.Fatalf("created %+v", v)
	}
	if again, err := s.Create(ctx, "pvc-1", Block, 8*MiB, 0); err != nil || again != v {
		t.Errorf("repeated create: %+v, %v; want %+v", again, err, v)
	}
	if _, err := s.Create(ctx, "pvc-1", Block, 16*MiB, 0); !errors.Is(err, ErrExists) {
		t.Errorf("create larger: %v, want ErrExists", err)
	}
	if _, err := s.Create(ctx, "pvc-1", Filesystem, 8*MiB, 0); !errors.Is(err, ErrExists) {
		t.Errorf("create as Filesystem: %v, want ErrExists", err)
	}
	if g, err := s.Grow("pvc-1", 32*MiB); err != nil || g.Size != 32*MiB {
		t.Errorf("grow: %+v, %v", g, err)
	}
	if g, err := s.Grow("pvc-1", 16*MiB); err != nil || g.Size != 32*MiB {
		t.Errorf("grow smaller must not shrink: %+v, %v", g, err)
	}
	st, err := os.Stat(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 32*MiB {
		t.Errorf("file is %d bytes, want %d", st.Size(), 32*MiB)
	}
	if _, err := s.Grow("pvc-2", MiB); !errors.Is(err, ErrNotFound) {
		t.Errorf("grow missing: %v, want ErrNotFound", err)
	}
	if err := s.Delete("pvc-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("pvc-1"); err != nil {
		t.Errorf("repeated delete: %v", err)
	}
	if _, err := s.Lookup("pvc-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup after delete: %v", err)
	}
}
