package watch

import (
	"time"

	"github.com/berth-vm/berth/common/disks"
)

// The decisions of the watch, pure so that tables test them.

// Room to resume: a guest paused because a disk's volume filled is resumed
// once the volume again gives QEMU at least RoomToResume(total). Resuming at
// the first free megabyte would pause it again at once (QEMU retries the
// failed writes, the guest's queue holds more, a qcow2 file also grows its
// tables); 64 MiB holds a full virtio queue of large requests with room to
// spare, and 1 % of a larger volume is a few seconds of writing at least.
// Capped at 1 GiB, so freeing a few GiB on a very large volume is enough.
const (
	MinRoomToResume = 64 << 20
	MaxRoomToResume = 1 << 30
)

// RoomToResume is the room a volume of total bytes must have again.
func RoomToResume(total uint64) uint64 {
	return min(max(total/100, MinRoomToResume), MaxRoomToResume)
}

// Backing off: a guest that pauses again soon after it was resumed (the room
// was used up at once) is resumed the next time only after a wait that
// doubles each time, from FirstBackoff to MaxBackoff. A pause that comes
// after StableRun of running starts the count again.
const (
	FirstBackoff = 10 * time.Second
	MaxBackoff   = 5 * time.Minute
	StableRun    = 2 * time.Minute
)

// Backoff is the wait before the next resume after retries pauses that each
// came soon after a resume (0 for the first).
func Backoff(retries int) time.Duration {
	if retries <= 0 {
		return 0
	}
	d := FirstBackoff
	for i := 1; i < retries && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Pause is a guest paused by QEMU on a write error (status io-error).
type Pause struct {
	Since    time.Time // when vmm saw it paused
	LastCont time.Time // when vmm last resumed it (zero: never in this run)
	Retries  int       // pauses in a row that came within StableRun of a resume
}

// NextPause is the Pause for a guest that has just paused again at now,
// after last (the pause before, if any: zero Since for none).
func NextPause(last Pause, now time.Time) Pause {
	p := Pause{Since: now, LastCont: last.LastCont}
	if !last.LastCont.IsZero() && now.Sub(last.LastCont) < StableRun {
		p.Retries = last.Retries + 1
	}
	return p
}

// Volume is what vmm knows of a full disk's volume now.
type Volume struct {
	// Known: statfs answered (a Filesystem disk). A Block disk's device has
	// no free space to look at: it is resumed on the backoff alone.
	Known        bool
	Avail, Total uint64
}

// BlockRetry is how long a guest paused on a Block disk (a thin device out of
// space) waits before vmm tries cont, besides the backoff.
const BlockRetry = 30 * time.Second

// ShouldResume says whether vmm resumes the paused guest now: every full
// disk's volume has RoomToResume again (a Block disk: BlockRetry has passed)
// and the backoff after the last resume has passed.
func ShouldResume(p Pause, now time.Time, full []Volume) bool {
	if len(full) == 0 {
		return false // paused for no disk vmm knows of: not vmm's to resume
	}
	if now.Sub(p.Since) < Backoff(p.Retries) {
		return false
	}
	for _, v := range full {
		if !v.Known {
			if now.Sub(p.Since) < BlockRetry {
				return false
			}
			continue
		}
		if v.Avail < RoomToResume(v.Total) {
			return false
		}
	}
	return true
}

// Target is a disk as the growth check sees it.
type Target struct {
	Format string // qcow2 or raw
	Block  bool
	Size   uint64 // the size it should have (0: none given, never grown)
}

// Space is what the disk's volume holds now: for a file, what statfs gives
// QEMU's uid (Avail) and what the file takes (Used, st_blocks × 512); for a
// Block disk the device's size.
type Space struct {
	Avail, Used uint64
	Device      uint64
}

// Grow says whether a disk that QEMU has at cur bytes is grown to t.Size now,
// and when not, why (empty when there is nothing to do). Never a shrink; a
// file only when its volume holds it fully allocated at the new size
// (disks.Room), a Block disk only when its device is that large.
func Grow(t Target, cur uint64, s Space) (grow bool, why string) {
	switch {
	case t.Size == 0 || cur >= t.Size:
		return false, ""
	case t.Block && s.Device < t.Size:
		return false, "the device is smaller than the disk's size"
	case t.Block:
		return true, ""
	case !disks.Room(s.Avail, s.Used, disks.FullAllocation(t.Format, t.Size)):
		return false, "the volume cannot hold the disk at its new size fully written"
	}
	return true, ""
}
