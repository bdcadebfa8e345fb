// Package status is the file through which vmm tells `vmm probe ready`
// whether the guest runs: vmm writes it in the run volume whenever QEMU's
// status changes (a guest paused on a full volume is not ready), the probe
// reads it every few seconds without asking QEMU (QMP serves one client at a
// time, and the file costs one small read).
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// FileName is the file in the run volume ($BERTH_RUN_DIR).
const FileName = "vm-status.json"

// Running is QEMU's status (query-status) of a running guest.
const Running = "running"

// Status is what the file holds.
type Status struct {
	// QEMU is QEMU's run state as query-status says it (running, io-error,
	// paused, shutdown, ...), or "starting" before QEMU answers.
	QEMU string `json:"qemu"`
	// Reason says why the guest is not running, for the probe's message.
	Reason string `json:"reason,omitempty"`
	// Since is when vmm saw this status first.
	Since time.Time `json:"since"`
	// Boot is when the guest's current boot began: QEMU's start, or the
	// guest's last reset (a reboot, a reset after a panic). probe ready
	// wants a DHCP lease granted after it: a lease from an earlier boot
	// says nothing of this one.
	Boot time.Time `json:"boot,omitzero"`
}

// Starting is the status vmm writes before QEMU starts, replacing any left by
// an earlier container of the pod.
const Starting = "starting"

// PoweredOff is vmm's own status (not QEMU's) once the guest has powered
// itself off and vmm stays without QEMU (ON_POWEROFF=stop): not ready, but
// live, so the kubelet does not start it again.
const PoweredOff = "powered-off"

// QEMU's run states (query-status) that vmm names and acts on.
const (
	GuestPanicked = "guest-panicked" // the guest's kernel panicked (pvpanic); vmm resets it or restarts the container
	InternalError = "internal-error" // QEMU cannot go on emulating the guest (e.g. a KVM emulation failure)
	IOError       = "io-error"       // paused on a disk error (a full volume: vmm resumes it)
	Paused        = "paused"         // paused by a QMP stop
	Shutdown      = "shutdown"       // the guest shut down; QEMU exits next
)

// Live says whether QEMU in run state st can go on without the container
// being restarted: a guest paused on a full volume or by someone's QMP stop
// is not ready but alive (restarting the container would lose the writes
// QEMU holds, or undo a pause someone asked for); an internal error never
// clears, and a panicked guest that vmm has not reset within a few seconds
// will not be (vmm resets it within one look, every second).
func Live(st string) (bool, string) {
	switch st {
	case InternalError:
		return false, "QEMU stopped the guest on an internal error (its emulation cannot go on): the container must restart"
	case GuestPanicked:
		return false, "the guest's kernel panicked and is still stopped there: the container must restart"
	}
	return true, ""
}

// Why says in words why a guest in run state st does not run, for the
// probes' output and the log.
func Why(st string) string {
	switch st {
	case GuestPanicked:
		return "the guest's kernel panicked (pvpanic)"
	case InternalError:
		return "QEMU stopped the guest on an internal error"
	case IOError:
		return "paused on a disk error"
	case Paused:
		return "paused by a QMP stop (QMP cont resumes it)"
	case Shutdown:
		return "the guest has shut down"
	case "suspended":
		return "the guest suspended itself (ACPI S3)"
	case "watchdog":
		return "the guest's watchdog fired"
	}
	return "QEMU's status is " + st
}

// MaxBytes bounds what is read of the file.
const MaxBytes = 64 << 10

// Write replaces the file atomically (a reader sees the old status or the
// new one), never through a symlink.
func Write(path string, s Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("vm status: %w", err)
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// Read reads the file as `vmm probe ready` does: ReadOwnedBy this process's
// euid (vmm and its probe run as one uid in the vm container).
func Read(path string) (Status, error) { return ReadOwnedBy(path, os.Geteuid()) }

// ReadOwnedBy reads the file without following a symlink or blocking on a
// FIFO. A file not owned by uid (vmm's) is refused, naming BERTH_RUN_DIR:
// another container of the pod (dnsmasq runs as nobody) must not be able to
// say the guest runs.
func ReadOwnedBy(path string, uid int) (Status, error) {
	f, err := fsutil.Open(path)
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return Status{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if int(st.Uid) != uid {
		return Status{}, stage.BadInputf("BERTH_RUN_DIR", filepath.Dir(path), "holds %s owned by uid %d, not by vmm's uid %d: only vmm writes it", FileName, st.Uid, uid)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes))
	if err != nil {
		return Status{}, fmt.Errorf("read %s: %w", path, err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}
