package fetch

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCheck: check lists each difference between the live state and the
// plan as one line naming what differs, none once applied; a qemu-img that
// cannot run leaves the state unread, an error rather than a difference.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	src := dir + "/src.qcow2"
	makeQcow2(t, src, "8M", "base")
	p := planFor(t, dir, map[string]string{"IMG_SOURCE": src})
	ctx := context.Background()

	diffs, err := p.check(ctx, time.Minute)
	if err != nil || len(diffs) != 3 || !strings.HasPrefix(diffs[0], "base record: ") || !strings.HasPrefix(diffs[1], "base: ") ||
		diffs[2] != "pet disk "+p.OverlayPath()+" does not exist" {
		t.Fatalf("nothing applied: %q, %v", diffs, err)
	}
	if err := testApplier(t).Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if diffs, err := p.check(ctx, time.Minute); err != nil || len(diffs) != 0 {
		t.Fatalf("applied: %q, %v", diffs, err)
	}
	bigger := planFor(t, dir, map[string]string{"IMG_SOURCE": src, "DISK_SIZE": "16Mi"})
	if diffs, err := bigger.check(ctx, time.Minute); err != nil || len(diffs) != 1 || diffs[0] != "pet disk is 8388608 bytes, DISK_SIZE is 16777216" {
		t.Fatalf("a larger DISK_SIZE: %q, %v", diffs, err)
	}
	if err := os.Truncate(p.BasePath(), 512); err != nil {
		t.Fatal(err)
	}
	if diffs, err := p.check(ctx, time.Minute); err != nil || len(diffs) != 3 || !strings.Contains(diffs[0], "its record says") ||
		!strings.Contains(diffs[1], "truncated or damaged") || !strings.HasPrefix(diffs[2], "pet disk record names base") {
		t.Fatalf("a base cut short: %q, %v", diffs, err)
	}

	t.Setenv("PATH", t.TempDir())
	if diffs, err := p.check(ctx, time.Minute); err == nil || !strings.Contains(err.Error(), "qemu-img") || diffs != nil {
		t.Fatalf("no qemu-img: %q, %v; want an error naming qemu-img", diffs, err)
	}
}
