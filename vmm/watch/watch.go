// Package watch is vmm's eye on the running QEMU, over vmm's own QMP
// connection: it keeps the status file `vmm probe ready` reads, names every
// state the guest is in (a reboot, a panic, a pause), resets a guest whose
// kernel panicked (or ends QEMU so the container restarts), resumes a
// guest that QEMU paused because a disk's volume filled (werror=enospc) once
// the volume has room again, and grows a disk whose target size its volume
// (or device) now holds, so a PVC grown while the pod runs is used without a
// restart. The decisions are in decide.go, pure.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/qemu"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"
)

// How often the watch looks (zero fields of Watch take these).
const (
	StatusEvery = time.Second      // query-status
	RoomEvery   = 2 * time.Second  // statfs of a paused guest's full volumes
	GrowEvery   = 10 * time.Second // query-block and the volumes, for growth
	QMPTimeout  = 10 * time.Second // one command on vmm's own connection
)

// Disk is one of the VM's disks as the watch sees it.
type Disk struct {
	Name   string // its serial (disks.RootSerial for the pet disk): what logs call it
	Drive  string // QEMU's drive id
	Path   string // the file, or the Block device
	Volume string // the directory whose filesystem holds the file ("" for Block)
	Target Target
}

// Disks lists the VM's disks: the pet overlay (target DISK_SIZE), then the
// data disks (target their size).
func Disks(c config.Config) []Disk {
	list := []Disk{{Name: disks.RootSerial, Drive: qemu.DiskDrive, Path: c.Overlay(), Volume: c.DiskDir,
		Target: Target{Format: "qcow2", Size: c.DiskSize}}}
	for _, d := range c.DataDisks {
		w := Disk{Name: d.Name, Drive: qemu.DataDrive(d.Name), Path: d.Path(c.DataDiskDir),
			Target: Target{Format: d.Format, Block: d.Block(), Size: d.Bytes}}
		if !d.Block() {
			w.Volume = d.VolumeDir(c.DataDiskDir)
		}
		list = append(list, w)
	}
	return list
}

// contSent stands for QEMU's status between vmm's cont and the next
// query-status.
const contSent = "cont sent"

// unknown is the status while QEMU does not answer vmm's query-status.
const unknown = "unknown"

// Watch watches one QEMU.
type Watch struct {
	Log        *slog.Logger
	QMP        *qmp.Client
	Disks      []Disk
	StatusFile string

	StatusEvery, RoomEvery, GrowEvery time.Duration // zero: the defaults

	// OnPanic is config.PanicReset or config.PanicRestart: what a guest
	// whose kernel panicked gets.
	OnPanic string
	// Abort ends QEMU and vmm with err (exit 1: the container restarts): a
	// panic with ON_PANIC=restart, an internal error. Nil: only logged.
	Abort func(err error)

	state string // QEMU's status as last seen

	// Boot is when the guest's current boot began (status.Status.Boot):
	// QEMU's start (vmm sets it), then each reset of the guest.
	Boot  time.Time
	reset bool // a RESET event came since the last poll
	// Reset, if set, is told of each new boot in the same QEMU (a RESET
	// event: a reboot, vmm's reset after a panic) when the watch takes it.
	Reset func(at time.Time)

	lastRoom, lastGrow time.Time // the last looks at the full volumes' room, at the sizes
	pause              Pause     // the current (or last) pause on a full volume
	full               []Disk    // the disks the current pause is on
	warned             map[string]string
}

// Run watches until ctx ends or QEMU's connection does (QEMU exited).
func (w *Watch) Run(ctx context.Context) error {
	if w.StatusEvery == 0 {
		w.StatusEvery = StatusEvery
	}
	if w.RoomEvery == 0 {
		w.RoomEvery = RoomEvery
	}
	if w.GrowEvery == 0 {
		w.GrowEvery = GrowEvery
	}
	w.warned = map[string]string{}
	tick := time.NewTicker(w.StatusEvery)
	defer tick.Stop()
	for {
		if err := w.poll(ctx, time.Now()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// poll looks once: the status (every call), the room of a paused guest's
// full volumes (every RoomEvery), the disks' sizes (every GrowEvery). An
// error is the end of the connection (QEMU exited).
func (w *Watch) poll(ctx context.Context, now time.Time) error {
	st, err := w.status(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil
	case err != nil && gone(err):
		w.write(status.Status{QEMU: "unknown", Reason: "vmm's QMP connection to QEMU ended: " + err.Error(), Since: now})
		return fmt.Errorf("watch: %w", err)
	case err != nil:
		// QEMU did not answer in time (a busy host): not ready while unknown; ask again.
		if w.state != unknown {
			w.Log.Warn("QEMU did not answer query-status on vmm's own QMP connection: asking again", "err", err)
			w.write(status.Status{QEMU: unknown, Reason: "QEMU did not answer vmm's query-status: " + err.Error(), Since: now})
			w.state = unknown
		}
		return nil
	}
	if w.reset {
		w.reset = false
		w.Boot = now
		if w.Reset != nil {
			w.Reset(now)
		}
		if st == w.state { // the status file must carry the new boot even when the status is the same
			w.write(status.Status{QEMU: st, Since: now})
		}
	}
	if st != w.state {
		w.changed(ctx, w.state, st, now)
		w.state = st
	}
	if st == "io-error" && now.Sub(w.lastRoom) >= w.RoomEvery {
		w.lastRoom = now
		w.maybeResume(ctx, now)
	}
	if now.Sub(w.lastGrow) >= w.GrowEvery {
		w.lastGrow = now
		w.grow(ctx)
	}
	return nil
}

// bound gives the next command on the long-lived connection QMPTimeout (the
// connection keeps no deadline of an earlier command or of its handshake:
// one slow answer must not end the watch). Its cancel also drops the events
// the client kept while it waited for the answer: the status and query-block
// say all vmm needs, and events must not pile up after any command.
func (w *Watch) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	_ = w.QMP.SetDeadline(time.Now().Add(QMPTimeout))
	cctx, cancel := context.WithTimeout(ctx, QMPTimeout)
	return cctx, func() {
		cancel()
		w.events(w.QMP.TakeEvents())
	}
}

// events logs what the status alone does not show: a guest that reset
// itself (a reboot: QEMU stays, the guest boots again) and a watchdog that
// fired. Everything else is in the status, or is the supervisor's to say.
func (w *Watch) events(evs []qmp.Event) {
	logged := false // QEMU may send one reset as two events: one line for them
	for _, e := range evs {
		switch e.Event {
		case "RESET":
			var d struct {
				Guest  bool   `json:"guest"`
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal(e.Data, &d)
			if d.Guest && !logged {
				w.Log.Info("the guest reset itself (a reboot): it boots again in the same QEMU", "reason", d.Reason)
				logged = true
			}
			w.reset = true // the guest's or vmm's own after a panic: a new boot either way
		case "WATCHDOG":
			var d struct {
				Action string `json:"action"`
			}
			_ = json.Unmarshal(e.Data, &d)
			w.Log.Error("the guest's watchdog fired: the guest stopped feeding it", "action", d.Action)
		}
	}
}

func (w *Watch) status(ctx context.Context) (string, error) {
	ctx, cancel := w.bound(ctx)
	defer cancel()
	st, err := w.QMP.QueryStatus(ctx)
	return st.Status, err
}

// gone: the connection ended (QEMU exited), not a slow answer.
func gone(err error) bool {
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// changed handles a new status: the status file, and for a pause on a full
// volume which disks and how full.
func (w *Watch) changed(ctx context.Context, from, to string, now time.Time) {
	s := status.Status{QEMU: to, Since: now}
	switch {
	case to == "io-error":
		w.pause = NextPause(w.pause, now)
		w.full = w.fullDisks(ctx)
		s.Reason = w.pausedReason()
	case to == status.Running && (from == "io-error" || from == contSent):
		w.Log.Info("the guest runs again", "paused_for", now.Sub(w.pause.Since).Round(time.Second).String())
	case to == status.Shutdown:
		s.Reason = status.Why(to) // QEMU exits next: the supervisor says how
	case to == status.GuestPanicked:
		s.Reason = status.Why(to)
		w.write(s)
		w.panicked(ctx)
		return
	case to == status.InternalError:
		s.Reason = status.Why(to)
		w.write(s)
		w.Log.Error("QEMU stopped the guest on an internal error: its emulation cannot go on; ending QEMU so the container restarts", "status", to)
		w.abort(errors.New("QEMU stopped the guest on an internal error (status internal-error): the container restarts, and the guest boots in a new QEMU"))
		return
	case to == "prelaunch" && from == status.GuestPanicked:
		s.Reason = "the guest was reset after its panic and is about to run"
	case to == status.Running && (from == status.GuestPanicked || from == "prelaunch"):
		w.Log.Info("the guest runs again after its reset: it boots again")
	case to == status.Running && from != "" && from != unknown:
		w.Log.Info("the guest runs again", "was", from)
	case to != status.Running:
		s.Reason = status.Why(to)
		w.Log.Warn("the guest is not running", "status", to, "why", s.Reason)
	}
	w.write(s)
}

// panicked acts on a guest whose kernel panicked (pvpanic; QEMU paused it
// in guest-panicked): a reset in the same QEMU, then cont (a reset leaves a
// panicked guest in prelaunch), or with ON_PANIC=restart the end of QEMU.
func (w *Watch) panicked(ctx context.Context) {
	if w.OnPanic == config.PanicRestart {
		w.Log.Error("the guest's kernel panicked: ending QEMU so the container restarts (ON_PANIC=restart)")
		w.abort(errors.New("the guest's kernel panicked (status guest-panicked; ON_PANIC=restart): the container restarts, and the guest boots in a new QEMU"))
		return
	}
	w.Log.Error("the guest's kernel panicked: resetting it, it boots again in the same QEMU (ON_PANIC=reset)")
	if err := w.command(ctx, "system_reset", nil); err != nil {
		w.Log.Error("could not reset the panicked guest: probe live fails until it runs", "err", err)
		return
	}
	// The reset takes effect in QEMU's main loop: until then cont is refused
	// ("Resetting the Virtual Machine is required").
	var err error
	for try := 0; try < 50; try++ {
		if err = w.command(ctx, "cont", nil); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	w.Log.Error("the panicked guest was reset but does not run: probe live fails until it runs", "err", err)
}

// command runs one QMP command on vmm's connection, bounded.
func (w *Watch) command(ctx context.Context, cmd string, args any) error {
	ctx, cancel := w.bound(ctx)
	defer cancel()
	_, err := w.QMP.Execute(ctx, cmd, args)
	return err
}

func (w *Watch) abort(err error) {
	if w.Abort != nil {
		w.Abort(err)
	}
}

func (w *Watch) write(s status.Status) {
	s.Boot = w.Boot
	if err := status.Write(w.StatusFile, s); err != nil {
		w.Log.Error("cannot write the status file: probe ready reads it", "err", err)
	}
}

// blockInfo is what query-block says of a drive.
type blockInfo struct {
	Device   string `json:"device"`
	IOStatus string `json:"io-status"` // ok, failed, nospace (with werror=enospc)
	Inserted *struct {
		Image struct {
			VirtualSize uint64 `json:"virtual-size"`
		} `json:"image"`
	} `json:"inserted"`
}

func (w *Watch) queryBlock(ctx context.Context) (map[string]blockInfo, error) {
	ctx, cancel := w.bound(ctx)
	defer cancel()
	var list []blockInfo
	if err := w.QMP.Query(ctx, "query-block", &list); err != nil {
		return nil, err
	}
	m := map[string]blockInfo{}
	for _, b := range list {
		m[b.Device] = b
	}
	return m, nil
}

// fullDisks finds the disks whose writes failed for lack of space and logs
// each with its volume's figures.
func (w *Watch) fullDisks(ctx context.Context) []Disk {
	blocks, err := w.queryBlock(ctx)
	if err != nil {
		w.Log.Error("the guest is paused on a write error, and query-block failed: cannot tell which disk", "err", err)
		return nil
	}
	var full []Disk
	for _, d := range w.Disks {
		switch blocks[d.Drive].IOStatus {
		case "nospace":
			full = append(full, d)
			attrs := []any{"disk", d.Name, "drive", d.Drive, "path", d.Path}
			if d.Volume == "" {
				attrs = append(attrs, "volume", "block device (no free space to read)")
			} else if u, err := disks.VolumeUsage(d.Volume); err != nil {
				attrs = append(attrs, "volume", d.Volume, "statfs_err", err)
			} else {
				attrs = append(attrs, "volume", d.Volume, "used", Human(u.Used), "total", Human(u.Total), "avail", Human(u.Avail),
					"full", percent(u.Total-u.Avail, u.Total), "resume_at_avail", Human(RoomToResume(u.Total)))
			}
			w.Log.Error("the guest is paused: a disk's volume is full", attrs...)
		case "failed":
			w.Log.Error("the guest is paused on a write error that is not a full volume: vmm does not resume it", "disk", d.Name, "drive", d.Drive, "path", d.Path)
		}
	}
	if len(full) == 0 {
		w.Log.Error("the guest is paused on a write error, and no disk reports a full volume: vmm does not resume it")
	}
	return full
}

func (w *Watch) pausedReason() string {
	if len(w.full) == 0 {
		return "paused on a write error"
	}
	names := ""
	for i, d := range w.full {
		if i > 0 {
			names += ", "
		}
		names += d.Name
	}
	return "paused: the volume of disk " + names + " is full; vmm resumes the guest once it has room"
}

// maybeResume resumes the paused guest when ShouldResume says so.
func (w *Watch) maybeResume(ctx context.Context, now time.Time) {
	var vols []Volume
	attrs := []any{}
	for _, d := range w.full {
		if d.Volume == "" {
			vols = append(vols, Volume{})
			continue
		}
		u, err := disks.VolumeUsage(d.Volume)
		if err != nil {
			w.Log.Warn("statfs of a full disk's volume", "disk", d.Name, "err", err)
			return
		}
		vols = append(vols, Volume{Known: true, Avail: u.Avail, Total: u.Total})
		attrs = append(attrs, d.Name+"_avail", Human(u.Avail))
	}
	if !ShouldResume(w.pause, now, vols) {
		return
	}
	if err := w.command(ctx, "cont", nil); err != nil {
		w.Log.Error("cont failed: the guest stays paused", "err", err)
		return
	}
	w.pause.LastCont = now
	// The next status is news either way: running (the guest runs again) or
	// io-error (a new pause, perhaps before a poll saw it run: the backoff counts it).
	w.state = contSent
	attrs = append(attrs, "paused_for", now.Sub(w.pause.Since).Round(time.Second).String(), "retries", w.pause.Retries)
	w.Log.Info("resuming the guest: its full volumes have room again", attrs...)
}

// grow grows every disk below its target whose volume now holds it.
func (w *Watch) grow(ctx context.Context) {
	var blocks map[string]blockInfo
	for _, d := range w.Disks {
		if d.Target.Size == 0 {
			continue
		}
		if blocks == nil {
			var err error
			if blocks, err = w.queryBlock(ctx); err != nil {
				w.once(d.Drive, "query-block: "+err.Error(), func() { w.Log.Warn("growth check: query-block failed", "err", err) })
				return
			}
		}
		b := blocks[d.Drive]
		if b.Inserted == nil {
			continue
		}
		cur := b.Inserted.Image.VirtualSize
		if cur >= d.Target.Size {
			delete(w.warned, d.Drive)
			continue
		}
		s, err := w.space(d)
		if err != nil {
			w.once(d.Drive, err.Error(), func() { w.Log.Warn("growth check: cannot read the disk's volume", "disk", d.Name, "err", err) })
			continue
		}
		ok, why := Grow(d.Target, cur, s)
		if !ok {
			w.once(d.Drive, fmt.Sprint(d.Target.Size, why), func() {
				attrs := []any{"disk", d.Name, "size", Human(cur), "target", Human(d.Target.Size), "why", why}
				if d.Target.Block {
					attrs = append(attrs, "device", Human(s.Device))
				} else {
					attrs = append(attrs, "needs", Human(disks.FullAllocation(d.Target.Format, d.Target.Size)), "has", Human(s.Avail+s.Used))
				}
				w.Log.Warn("not growing a disk yet: vmm grows it once its volume has room", attrs...)
			})
			continue
		}
		if err := w.command(ctx, "block_resize", map[string]any{"device": d.Drive, "size": d.Target.Size}); err != nil {
			var qe *qmp.Error
			if !errors.As(err, &qe) && ctx.Err() != nil {
				return
			}
			w.once(d.Drive, "block_resize: "+err.Error(), func() { w.Log.Error("block_resize failed", "disk", d.Name, "target", Human(d.Target.Size), "err", err) })
			continue
		}
		delete(w.warned, d.Drive)
		w.Log.Info("grew a disk to its size: the guest sees the new size now", "disk", d.Name, "drive", d.Drive, "from", Human(cur), "to", Human(d.Target.Size))
	}
}

// once runs log unless the same key last logged the same thing.
func (w *Watch) once(key, what string, log func()) {
	if w.warned[key] == what {
		return
	}
	w.warned[key] = what
	log()
}

func (w *Watch) space(d Disk) (Space, error) {
	if d.Target.Block {
		n, err := deviceSize(d.Path)
		return Space{Device: n}, err
	}
	u, err := disks.VolumeUsage(d.Volume)
	if err != nil {
		return Space{}, err
	}
	used, err := fileUsed(d.Path)
	if err != nil {
		return Space{}, err
	}
	return Space{Avail: u.Avail, Used: used}, nil
}

// Human writes a size in bytes for a log line: whole bytes below 1 KiB, else
// KiB, MiB, GiB or TiB with one decimal.
func Human(b uint64) string {
	const units = "KMGT"
	if b < 1<<10 {
		return fmt.Sprintf("%dB", b)
	}
	v, i := float64(b)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%ci", v, units[i])
}

func percent(part, whole uint64) string {
	if whole == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f%%", float64(part)*100/float64(whole))
}
