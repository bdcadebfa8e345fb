package status

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	want := Status{QEMU: "io-error", Reason: "the volume of disk data is full", Since: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil || got != want {
		t.Fatalf("Read = %+v, %v; want %+v", got, err, want)
	}
}

// A status file of another owner is refused: no other container of the pod may
// say the guest runs.
func TestReadRefusesAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("BERTH_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root (chown)")
		}
		t.Skip("needs root (chown)")
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := Write(path, Status{QEMU: Running}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); !stage.IsBadInput(err) {
		t.Fatalf("Read of a file owned by uid 4242: %v; want bad input naming BERTH_RUN_DIR", err)
	}
}

// TestLive: only the states that never clear by themselves fail liveness; a
// pause (a full volume, a QMP stop) keeps the container.
func TestLive(t *testing.T) {
	for _, tc := range []struct {
		st   string
		live bool
	}{
		{Running, true},
		{IOError, true},
		{Paused, true},
		{Shutdown, true},
		{"prelaunch", true},
		{"suspended", true},
		{GuestPanicked, false},
		{InternalError, false},
	} {
		live, why := Live(tc.st)
		if live != tc.live || (live != (why == "")) {
			t.Errorf("Live(%q) = %v, %q; want live %v, a reason exactly when not live", tc.st, live, why, tc.live)
		}
	}
	for _, st := range []string{GuestPanicked, InternalError, IOError, Paused, Shutdown, "suspended", "watchdog", "colo"} {
		if w := Why(st); w == "" || (st == "colo" && w != "QEMU's status is colo") {
			t.Errorf("Why(%q) = %q", st, w)
		}
	}
}
