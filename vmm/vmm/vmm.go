// Package vmm is the stage: read the config, decide the accelerator, build the
// command line, then run and supervise QEMU.
package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/podmem"
	"github.com/berth-vm/berth/common/qcow2"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/agent"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/firmware"
	"github.com/berth-vm/berth/vmm/kvm"
	"github.com/berth-vm/berth/vmm/memlimit"
	"github.com/berth-vm/berth/vmm/qemu"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"
	"github.com/berth-vm/berth/vmm/swtpm"
	"github.com/berth-vm/berth/vmm/tap"
	"github.com/berth-vm/berth/vmm/watch"
)

// KVMProbeTimeout bounds the KVM probe: a working KVM answers in milliseconds.
const KVMProbeTimeout = 2 * time.Second

// KVMDevice and VhostDevice are the devices vmm looks at.
const (
	KVMDevice   = "/dev/kvm"
	VhostDevice = "/dev/vhost-net"
)

// Summary is vmm's -h paragraph.
const Summary = "Runs the VM: builds QEMU's command line from the environment and runs qemu-system-x86_64 as its\n" +
	"child (console on stdout, QMP on $BERTH_RUN_DIR/qmp.sock); SIGTERM powers the guest down over ACPI.\n" +
	"--check asks the running QEMU over QMP whether it is the VM of the plan.\n" +
	"`vmm probe ready` and `vmm probe live` are the pod's exec probes (they write no termination log).\n" +
	"`vmm agent ping|osinfo|freeze|thaw|status` asks the guest agent (GUEST_AGENT), e.g. to freeze around a backup."

// Stage is vmm as a stage.Stage: the plan is QEMU's command line, --dry-run
// prints it, --check compares the running QEMU with it, and applying it runs
// and supervises QEMU until the guest powers off or vmm is told to stop.
func Stage() stage.Stage {
	return stage.Stage{
		Spec: stage.Spec{Name: "vmm", Summary: Summary, Vars: config.Vars()},
		Plan: makePlan,
	}
}

// Plan is vmm's decision, made before QEMU starts: the command line and what
// starting it needs.
type Plan struct {
	QEMU qemu.Plan  // the config, the accelerator, vhost and the VNC password's presence
	Args []qemu.Arg // QEMU's command line, each option with why it is there

	bin      string   // the QEMU binary found in PATH (apply only)
	swtpm    string   // the swtpm binary found in PATH (TPM=true, apply only)
	link     tap.Link // the tap net-setup made, checked (apply only)
	password string   // the VNC password, "" for none
}

// makePlan reads the environment, checks every input and decides the
// accelerator: everything before QEMU starts. It changes nothing; the KVM
// probe (a child running a tiny guest) is its only side effect. The QEMU
// binary and the tap are looked at only when the plan is to be applied:
// --dry-run prints the command line anywhere, and --check asks the running
// QEMU, which holds the tap.
func makePlan(r stage.Run) (stage.Plan, error) {
	host := config.Host{NumCPU: runtime.NumCPU(), Stat: os.Stat}
	c, err := config.FromEnv(r.Env, host)
	if err != nil {
		return nil, err
	}
	apply := !r.DryRun && !r.Check
	// Every check of the input comes before the first log line and the first
	// change: bad input is one line and exit 2, and nothing has started.
	if err := config.CheckFiles(c); err != nil {
		return nil, err
	}
	standalone, err := checkDisk(c)
	if err != nil {
		return nil, err
	}
	if err := checkDataDisks(c); err != nil {
		return nil, err
	}
	if err := checkSockets(c); err != nil {
		return nil, err
	}
	if err := fsutil.CheckOwnFile(c.StatusFile()); err != nil {
		return nil, stage.BadInputf("BERTH_RUN_DIR", c.RunDir, "status file: %v", err)
	}
	p := &Plan{}
	if c.Firmware.UEFI() {
		// The store is refused now if it is not the VM's (exit 2 before anything starts);
		// apply makes it when it does not exist.
		if _, err := c.Firmware.Inspect(c.DiskDir, c.Name); err != nil {
			return nil, err
		}
	}
	if apply {
		if c.Firmware.UEFI() {
			if err := c.Firmware.CheckFiles(); err != nil {
				return nil, err
			}
		}
		if p.bin, err = exec.LookPath(c.QEMU); err != nil {
			return nil, stage.BadInputf("QEMU", c.QEMU, "no such QEMU binary (%v)", errUnwrap(err))
		}
	}
	if c.TPM {
		// The same for the TPM's state: refused now, made by apply.
		if _, err := swtpm.Inspect(c.DiskDir, c.Name); err != nil {
			return nil, err
		}
		if apply {
			if p.swtpm, err = exec.LookPath(c.SWTPM); err != nil {
				return nil, stage.BadInputf("TPM", "true", "the VM's TPM needs swtpm, and SWTPM=%s is not there (%v): Berth's vmm image has it; an image override without swtpm cannot give the VM a TPM", c.SWTPM, errUnwrap(err))
			}
		}
	}
	if c.VNC && c.VNCPasswordFile != "" {
		if p.password, err = config.VNCPassword(c.VNCPasswordFile); err != nil {
			return nil, err
		}
	}
	if apply {
		if p.link, err = checkTap(c); err != nil {
			return nil, err
		}
	}

	if standalone {
		r.Log.Warn("the overlay has no backing file: booting it as a standalone disk", "overlay", c.Overlay())
	}
	if len(p.password) > 8 {
		r.Log.Warn("VNC passwords are at most 8 characters: only the first 8 count")
	}
	accel, err := chooseAccel(r.Ctx, r.Log, c.Accel)
	if err != nil {
		return nil, err
	}
	tb := planMemory(r.Log, accel, c.Memory, memlimit.Self)
	p.QEMU = qemu.Plan{Config: c, Accel: accel, Vhost: canOpen(VhostDevice), VNCPassword: p.password != "", TBSize: tb.MiB, TBReason: tb.Reason}
	p.Args = qemu.Args(p.QEMU)
	return p, nil
}

// Print writes the command line and why each option is there (--dry-run).
func (p *Plan) Print(w io.Writer) error {
	_, err := fmt.Fprint(w, qemu.Explain(p.QEMU.QEMU, p.Args))
	return err
}

// Apply attaches to the tap, starts QEMU and supervises it until it ends.
func (p *Plan) Apply(r stage.Run) error {
	c := p.QEMU.Config
	if r.Ctx.Err() != nil {
		r.Log.Info("stop requested before QEMU started: nothing to shut down")
		return nil
	}
	// Every descriptor opened for QEMU is closed if QEMU does not start.
	var opened []*os.File
	fail := func(err error) error {
		for _, f := range opened {
			closeIf(f)
		}
		return err
	}
	tapFile, err := attachTap(r.Log, c, p.link, p.QEMU.Vhost)
	if err != nil {
		return err
	}
	opened = append(opened, tapFile)
	seed, err := fsutil.Open(c.SeedISO())
	if err != nil {
		if errors.Is(err, fsutil.ErrNotOwnFile) {
			return fail(stage.BadInputf("BERTH_RUN_DIR", c.RunDir, "seed ISO: %v", err))
		}
		return fail(fmt.Errorf("open the seed ISO: %w", err))
	}
	opened = append(opened, seed)
	// The overlay, the ISOs and the data disks again, right before QEMU opens them.
	err = config.CheckFiles(c)
	if err == nil {
		err = checkDataDisks(c)
	}
	if err != nil {
		return fail(err)
	}
	cdroms, err := openCDROMs(c)
	opened = append(opened, cdroms...)
	if err != nil {
		return fail(err)
	}
	vars, err := openVars(r.Log, c) // nil with FIRMWARE=bios
	if err != nil {
		return fail(err)
	}
	opened = append(opened, vars)
	monitor, qemuEnd, err := monitorPair()
	if err != nil {
		return fail(err)
	}
	opened = append(opened, qemuEnd)
	defer monitor.Close()
	boot := time.Now()
	if err := status.Write(c.StatusFile(), status.Status{QEMU: status.Starting, Reason: "QEMU is starting", Since: boot, Boot: boot}); err != nil {
		return fail(fmt.Errorf("status for probe ready: %w", err))
	}
	tpm, tpmEnd, err := startTPM(r.Log, c, p.swtpm) // nil with TPM=false
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(p.bin, qemu.Strings(p.Args)...)
	cmd.ExtraFiles = []*os.File{tapFile, seed, qemuEnd} // fd 3 = qemu.TapFD, fd 4 = qemu.SeedFD, fd 5 = qemu.MonitorFD
	if vars != nil || tpm != nil || len(cdroms) > 0 {
		cmd.ExtraFiles = append(cmd.ExtraFiles, vars) // fd 6 = qemu.VarsFD (nil: closed in QEMU)
	}
	if tpm != nil || len(cdroms) > 0 {
		cmd.ExtraFiles = append(cmd.ExtraFiles, tpmEnd) // fd 7 = qemu.TPMFD (nil: closed in QEMU)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, cdroms...) // fd 8+i = qemu.CDROMFD(i)
	cmd.Stdout = r.Stdout                              // the guest console
	// QEMU's stdio chardev reads the serial port's input from stdin: /dev/null in a plain pod; the
	// terminal of `kubectl attach -it` with the chart's console.serial.interactive (stdin and tty
	// on the container). Passed as the *os.File itself, so QEMU sees the tty and makes it raw.
	cmd.Stdin = os.Stdin
	// QEMU dies with vmm, even when vmm is killed: no VM outlives its supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r.Log.Info("starting QEMU", "accel", p.QEMU.Accel, "console", consoleDesc(os.Stdin), "cpus", c.CPUs, "memory", fmt.Sprintf("%dMi", c.Memory>>20),
		"mac", c.MAC().String(), "vnc", vncDesc(p.QEMU))

	vmMetrics := startMetrics(r.Ctx, r.Log, r.Env, c) // METRICS_PORT (nil: none)
	sup := &Supervisor{
		Log:             r.Log,
		QMPSocket:       c.QMPSocket(),
		ShutdownTimeout: c.ShutdownTimeout,
		Sockets:         qemuSockets(c),
		Reap:            os.Getpid() == 1,
		Started:         func(p *os.Process) { vmMetrics.qemuStarted(p.Pid, boot) },
	}
	sup.Watch = func(ctx context.Context, abort func(error)) {
		hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		client, err := qmp.NewClient(hctx, monitor)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.Log.Error("vmm's own QMP connection did not come up: no watch over full volumes and disk growth", "err", err)
			}
			return
		}
		w := &watch.Watch{Log: r.Log, QMP: client, Disks: watch.Disks(c), StatusFile: c.StatusFile(), OnPanic: c.OnPanic, Abort: abort, Boot: boot}
		var onReset []func(time.Time) // each new boot in this QEMU: the greeting and the metrics hear of it
		if f := vmMetrics.reset(); f != nil {
			onReset = append(onReset, f)
		}
		if c.GuestAgent {
			g := &watch.Greeting{Log: r.Log, Socket: c.AgentSocket()}
			g.NewBoot(boot)
			onReset = append(onReset, g.NewBoot)
			go g.Run(ctx)
		}
		w.Reset = func(at time.Time) {
			for _, f := range onReset {
				f(at)
			}
		}
		vmMetrics.connected(client)
		defer vmMetrics.connected(nil)
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			r.Log.Debug("watch ended", "err", err) // QEMU exited: the supervisor reports why
		}
	}
	if c.GuestAgent {
		sup.Stopping = func(ctx context.Context) { drainAgent(ctx, r.Log, c.AgentSocket()) }
	}
	if p.QEMU.VNCPassword {
		password := p.password
		sup.AfterStart = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := qmp.Do(ctx, c.QMPSocket(), "change-vnc-password", map[string]string{"password": password}); err != nil {
				return fmt.Errorf("set the VNC password: %w (VNC refuses every client until it is set)", err)
			}
			r.Log.Info("VNC password set")
			return nil
		}
	}
	if tpm != nil {
		tpm.supervise(r.Log, sup)
	}
	err = sup.Run(r.Ctx, cmd)
	if tpm != nil {
		err = tpm.stop(r.Log, err)
	}
	if err != nil || !sup.PoweredOff || c.OnPoweroff != config.PoweroffStop {
		return err // ON_POWEROFF=restart: exit 0, and the kubelet starts the container again
	}
	return stayOff(r, c, sup.Reap)
}

// stayOff is ON_POWEROFF=stop after the guest powered itself off: without an
// operator nothing can scale the StatefulSet to 0, so vmm stays as the
// container's process, holding no QEMU, until the pod is deleted. The status
// file says powered-off (probe ready fails with how to start the VM again,
// probe live passes: a restart of the container would boot the guest), and
// the log and the termination log say the same.
func stayOff(r stage.Run, c config.Config, reap bool) error {
	pod, err := os.Hostname() // a StatefulSet pod's hostname is its name
	if err != nil {
		pod = "<pod>"
	}
	how := fmt.Sprintf("the guest powered itself off and stays off (ON_POWEROFF=stop): start it again with `kubectl delete pod %s` (or helm upgrade with running: false, then running: true)", pod)
	since := time.Now()
	if err := status.Write(c.StatusFile(), status.Status{QEMU: status.PoweredOff, Reason: how, Since: since}); err != nil {
		r.Log.Error("cannot write the status file: probe ready reads it", "err", err)
	}
	stage.WriteTerminationLog(r.Env.String("TERMINATION_LOG", "/dev/termination-log"), "vmm: "+how)
	r.Log.Warn("the guest powered itself off: vmm holds no QEMU and waits for the pod's deletion", "on_poweroff", c.OnPoweroff,
		"start_again", fmt.Sprintf("kubectl delete pod %s", pod))
	chld := make(chan os.Signal, 1)
	if reap {
		signal.Notify(chld, syscall.SIGCHLD)
		defer signal.Stop(chld)
	}
	for {
		select {
		case <-r.Ctx.Done():
			r.Log.Info("stop requested: the guest is off already", "off_for", time.Since(since).Round(time.Second).String())
			return nil
		case <-chld:
			reapOthers()
		}
	}
}

// openVars makes the VM's UEFI variable store from OVMF's template when it
// does not exist yet (FIRMWARE=uefi) and opens it for QEMU; nil with
// FIRMWARE=bios. The store is looked at again first: the volume is shared.
func openVars(log *slog.Logger, c config.Config) (*os.File, error) {
	if !c.Firmware.UEFI() {
		return nil, nil
	}
	v, err := c.Firmware.Inspect(c.DiskDir, c.Name)
	if err != nil {
		return nil, err
	}
	created, err := c.Firmware.Ensure(v)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("UEFI variable store made from OVMF's template", "vars", v.Path, "template", c.Firmware.Template(), "secure_boot", c.Firmware.SecureBoot)
	} else {
		log.Info("UEFI variable store kept", "vars", v.Path, "made_from", v.Record.Template, "secure_boot", v.Record.SecureBoot, "created", v.Record.Created)
	}
	return firmware.Open(v)
}

// tpmRun is the VM's swtpm while QEMU runs.
type tpmRun struct {
	proc  *swtpm.Process
	state swtpm.State
	mu    sync.Mutex // state's record: the watch and stop both mark it
}

// startTPM makes the VM's TPM state directory when it does not exist yet
// (TPM=true), looked at again first (the volume is shared), and starts swtpm
// on it; it returns QEMU's end of the control channel. nil with TPM=false.
func startTPM(log *slog.Logger, c config.Config, bin string) (*tpmRun, *os.File, error) {
	if !c.TPM {
		return nil, nil, nil
	}
	s, err := swtpm.Inspect(c.DiskDir, c.Name)
	if err != nil {
		return nil, nil, err
	}
	created, err := swtpm.Ensure(&s)
	if err != nil {
		return nil, nil, err
	}
	if created {
		log.Info("TPM state directory made: the VM's TPM starts blank", "state", s.Dir)
	} else {
		log.Info("TPM state kept", "state", s.Dir, "created", s.Record.Created, "initialized", s.Record.Initialized)
	}
	proc, qemuEnd, err := swtpm.Start(log, bin, s.Dir)
	if err != nil {
		return nil, nil, err
	}
	return &tpmRun{proc: proc, state: s}, qemuEnd, nil
}

// supervise keeps the supervisor's reaper off swtpm and watches it beside
// QEMU: the record learns once that swtpm wrote its state (from then on a
// lost state is refused), and a swtpm that ends while QEMU runs ends QEMU
// with its message (the guest's TPM is gone: exit 1, the container restarts;
// the state on the volume is what swtpm last saved). With --terminate swtpm
// ends by itself when QEMU closes its channel: that is not a failure, so an
// end is acted on only when QEMU is still there a second later.
func (t *tpmRun) supervise(log *slog.Logger, sup *Supervisor) {
	sup.Keep = append(sup.Keep, t.proc.Pid())
	inner := sup.Watch
	sup.Watch = func(ctx context.Context, abort func(error)) {
		go func() {
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					t.mark(log)
				case <-t.proc.Done():
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
						abort(t.proc.ExitError())
					}
					return
				}
			}
		}()
		if inner != nil {
			inner(ctx, abort)
		}
	}
}

func (t *tpmRun) mark(log *slog.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state.Record.Initialized != "" {
		return
	}
	if ok, err := swtpm.MarkInitialized(&t.state); err != nil {
		log.Error("cannot record that the TPM holds state", "err", err)
	} else if ok {
		log.Info("the TPM's state is on the volume: from now on it is never replaced by a blank one", "state", t.state.Dir)
	}
}

// stop waits for swtpm after QEMU (it saves its state and ends when QEMU
// closes the channel) and marks the record; a swtpm that had ended before
// QEMU did is named in QEMU's error.
func (t *tpmRun) stop(log *slog.Logger, qemuErr error) error {
	died := false
	select {
	case <-t.proc.Done():
		died = qemuErr != nil
	default:
	}
	t.proc.Stop(log, 10*time.Second)
	t.mark(log)
	if died && !strings.Contains(qemuErr.Error(), "swtpm") {
		return fmt.Errorf("%w; before that, %v", qemuErr, t.proc.ExitError())
	}
	return qemuErr
}

// openCDROMs opens each ISO of CDROMS read-only without following a symlink
// (the image cache is shared); QEMU gets the descriptors, never the paths.
// On an error the ones opened so far are returned too, to be closed.
func openCDROMs(c config.Config) ([]*os.File, error) {
	var files []*os.File
	for i := range c.CDROMs {
		f, err := fsutil.Open(c.CDROM(i))
		if err != nil {
			if errors.Is(err, fsutil.ErrNotOwnFile) || errors.Is(err, fs.ErrNotExist) {
				return files, stage.BadInputf("IMAGE_DIR", c.ImageDir, "ISO %s (%s): %v: image-fetch puts it there", c.CDROM(i), artifact.Name(i), err)
			}
			return files, fmt.Errorf("open the ISO %s: %w", c.CDROM(i), err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeIf(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// qemuSockets are the sockets QEMU serves in the run volume besides qmp.sock.
func qemuSockets(c config.Config) []string {
	if c.GuestAgent {
		return []string{c.AgentSocket()}
	}
	return nil
}

// monitorPair makes vmm's own QMP connection: a connected socket pair, one
// end for vmm, the other for QEMU to inherit (qemu.MonitorFD). Nothing in a
// shared volume, nobody else can connect.
func monitorPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket pair for vmm's QMP connection: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "vmm-qmp")
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socket pair for vmm's QMP connection: %w", err)
	}
	return conn, os.NewFile(uintptr(fds[1]), "qemu-qmp"), nil
}

// consoleDesc says whether the serial console takes input: a terminal on stdin is `kubectl attach -it`.
func consoleDesc(stdin *os.File) string {
	if _, err := unix.IoctlGetTermios(int(stdin.Fd()), unix.TCGETS); err == nil {
		return "interactive (stdin is a terminal: kubectl attach -it)"
	}
	return "output only (kubectl logs)"
}

func vncDesc(p qemu.Plan) string {
	if !p.VNC {
		return "off"
	}
	s := p.VNCListen + ":5900"
	if p.VNCPassword {
		s += " (password)"
	}
	return s
}

// chooseAccel turns ACCEL into kvm or tcg, probing KVM unless ACCEL=tcg.
func chooseAccel(ctx context.Context, log *slog.Logger, want string) (string, error) {
	if want == config.AccelTCG {
		log.Info("accelerator: TCG (ACCEL=tcg)")
		return config.AccelTCG, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own binary for the KVM probe: %w", err)
	}
	start := time.Now()
	res := kvm.Probe(ctx, self, KVMDevice, KVMProbeTimeout)
	log.Info("KVM probe", "works", res.OK, "reason", res.Reason, "took", time.Since(start).Round(time.Millisecond))
	switch {
	case res.OK:
		return config.AccelKVM, nil
	case want == config.AccelKVM:
		return "", stage.BadInputf("ACCEL", want, "KVM does not work here (%s): use ACCEL=auto or ACCEL=tcg, or give the pod a working /dev/kvm", res.Reason)
	}
	log.Warn("KVM does not work here: running the guest with TCG emulation, which is many times slower", "reason", res.Reason)
	return config.AccelTCG, nil
}

// planMemory sizes TCG's translation buffer to the container's memory limit
// (podmem.PlanTB; under KVM there is none, podmem.PlanKVM) and logs the
// choice. A limit too small for the guest to fill its RAM is a warning, not
// bad input: the limit is the pod's resources, outside vmm's environment; the
// VM works until its guest uses nearly all its RAM, which many never do, and
// exit 2 would make a possible OOM kill a certain outage. The warning names
// the limit and the memoryOverhead the chart needs.
func planMemory(log *slog.Logger, accel string, guest uint64, read func() (memlimit.Limit, error)) podmem.TB {
	lim, err := read()
	if err != nil {
		log.Warn("cannot read the container's memory limit: sizing as if there were none", "err", err)
	}
	kvm := accel == config.AccelKVM
	var tb podmem.TB
	if kvm {
		tb = podmem.PlanKVM(lim.Bytes, guest)
	} else {
		tb = podmem.PlanTB(lim.Bytes, guest)
	}
	if tb.Short {
		log.Warn("the memory limit is too small for this VM: a guest that fills its RAM will be OOM-killed with QEMU",
			"memory_limit", podmem.MiBString(tb.Limit), "limit_file", lim.File, "guest_memory", podmem.MiBString(guest),
			"memory_overhead", podmem.MiBString(tb.Limit-min(tb.Limit, guest)),
			"need_memory_overhead", podmem.MiBString(podmem.NeededOverhead(kvm)), "accel", accel,
			"fix", "raise the chart's vm.memoryOverhead (or resources.limits.memory) to at least guest memory + need_memory_overhead")
	}
	if kvm {
		log.Info("memory", "reason", tb.Reason)
	} else {
		log.Info("TCG translation buffer", "tb_size", fmt.Sprintf("%dMi", tb.MiB), "memory_limit", limitDesc(lim), "reason", tb.Reason)
	}
	return tb
}

func limitDesc(l memlimit.Limit) string {
	if l.Bytes == 0 {
		return "none"
	}
	return podmem.MiBString(l.Bytes) + " (" + l.File + ")"
}

func canOpen(dev string) bool {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// checkTap checks TAP is the tap net-setup made for this uid (exit 2 naming
// TAP when not; tap.Check).
func checkTap(c config.Config) (tap.Link, error) {
	owner, err := tap.Self()
	if err != nil {
		return tap.Link{}, err
	}
	return tap.Check(c.Tap, owner)
}

// attachTap attaches to the tap checkTap found, without being able to create
// one, and checks the attached device is the link that was checked (exit 1
// when it changed in between: a race).
func attachTap(log *slog.Logger, c config.Config, link tap.Link, vhost bool) (*os.File, error) {
	f, dev, vnet, err := tap.Attach(tap.Devices(c.TunFallback()), c.Tap)
	if errors.Is(err, tap.ErrNotTunDevice) {
		return nil, stage.BadInputf("BERTH_RUN_DIR", c.RunDir, "no usable tun device: %v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("attach to the tap made by net-setup: %w", err)
	}
	if err := tap.Recheck(f, link); err != nil {
		f.Close()
		return nil, err
	}
	log.Info("attached to the tap", "tap", c.Tap, "ifindex", link.Index, "bridge", link.Bridge, "device", dev, "vnet_hdr", vnet, "vhost", vhost)
	return f, nil
}

// checkSockets refuses anything but a socket (a stale one from the last
// QEMU) at qmp.sock and QEMU's other sockets (the guest agent's qga.sock):
// QEMU would unlink it, and the probes would follow a symlink there.
func checkSockets(c config.Config) error {
	for _, sock := range append([]string{c.QMPSocket()}, qemuSockets(c)...) {
		fi, err := os.Lstat(sock)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", sock, err)
		}
		if fi.Mode().Type() != fs.ModeSocket {
			return stage.BadInputf("BERTH_RUN_DIR", c.RunDir, "%s is %s, not QEMU's socket: refusing to replace it (left as it is; remove it if it is not yours)", sock, fsutil.Describe(fi.Mode()))
		}
	}
	return nil
}

// checkDisk checks the chain QEMU will open is the one image-fetch made: the
// overlay is a qcow2 (regular file, not a symlink) without encryption or an
// external data file; its backing file, if any, is an absolute path directly
// in IMAGE_DIR with backing_fmt qcow2 or raw, a regular file (not a symlink),
// and self-contained (a qcow2 base names no backing or data file of its own).
// So a missing base is reported by name (image-fetch's job) instead of as
// QEMU's open error, and an overlay edited to point elsewhere is refused.
//
// standalone is true for an overlay without a backing file and without
// image-fetch's record (made by hand: it boots as it is, with a warning).
func checkDisk(c config.Config) (standalone bool, err error) {
	badDisk := func(format string, args ...any) error {
		return stage.BadInputf("DISK_DIR", c.DiskDir, "pet overlay %s: "+format+" (image-fetch makes the overlay)", append([]any{c.Overlay()}, args...)...)
	}
	h, err := qcow2.Read(c.Overlay())
	if err != nil {
		return false, badDisk("%v", err)
	}
	switch {
	case h.Encrypted():
		return false, badDisk("is encrypted")
	case h.HasDataFile():
		return false, badDisk("has an external data file")
	case h.BackingFile == "":
		blank, err := checkStandalone(c)
		return !blank && err == nil, err
	case !filepath.IsAbs(h.BackingFile) || filepath.Clean(h.BackingFile) != h.BackingFile || filepath.Dir(h.BackingFile) != c.ImageDir:
		return false, stage.BadInputf("IMAGE_DIR", c.ImageDir, "the overlay %s has the backing file %q, not a file in IMAGE_DIR: image-fetch writes the base's absolute path in IMAGE_DIR (was IMAGE_DIR changed?)", c.Overlay(), h.BackingFile)
	case h.BackingFormat != "qcow2" && h.BackingFormat != "raw":
		return false, badDisk("backing format %q, want qcow2 or raw (image-fetch records it; QEMU must never probe a format)", h.BackingFormat)
	}
	base := h.BackingFile
	fi, err := os.Lstat(base)
	if err != nil {
		return false, stage.BadInputf("IMAGE_DIR", c.ImageDir, "the overlay's base image %s is missing (%v): image-fetch downloads it; run image-fetch first", base, errUnwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return false, stage.BadInputf("IMAGE_DIR", c.ImageDir, "the overlay's base image %s is %s, not a regular file: refused, left as it is", base, fsutil.Describe(fi.Mode()))
	}
	if h.BackingFormat == "qcow2" {
		bh, err := qcow2.Read(base)
		if err != nil {
			return false, stage.BadInputf("IMAGE_DIR", c.ImageDir, "the overlay's base image %s: %v (its backing format is qcow2)", base, err)
		}
		if bh.BackingFile != "" || bh.HasDataFile() || bh.Encrypted() {
			return false, stage.BadInputf("IMAGE_DIR", c.ImageDir, "the overlay's base image %s is not self-contained (a backing file, a data file or encryption): image-fetch never caches such an image", base)
		}
	}
	return false, nil
}

// checkStandalone refuses an overlay without a backing file whose record
// (image-fetch's DISK_DIR/<VM_NAME>.json) says it was made on a base: its
// backing file was taken out of it, and the guest would see a disk without
// its base. One made blank (an OS installed from an ISO) boots as it is; one
// without a record (made by hand) boots with a warning.
func checkStandalone(c config.Config) (blank bool, err error) {
	b, err := fsutil.ReadRecord(c.OverlayRecord())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, stage.BadInputf("DISK_DIR", c.DiskDir, "the pet disk's record %s: %v", c.OverlayRecord(), err)
	}
	var rec struct {
		Blank bool   `json:"blank"`
		Base  string `json:"base"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return false, stage.BadInputf("DISK_DIR", c.DiskDir, "the pet disk's record %s is not JSON: %v", c.OverlayRecord(), err)
	}
	if !rec.Blank {
		return false, stage.BadInputf("DISK_DIR", c.DiskDir, "the pet disk %s has no backing file, but its record %s says it was made on the base %q: its backing file was taken out of it; refusing to boot it (left as it is)", c.Overlay(), c.OverlayRecord(), rec.Base)
	}
	return true, nil
}

func errUnwrap(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// drainAgent reads the guest agent's channel while the guest shuts down
// (agent.Drain: a reply a client left unread would keep qemu-guest-agent
// from stopping) and says so when there was one.
func drainAgent(ctx context.Context, log *slog.Logger, sock string) {
	n, err := agent.Drain(ctx, sock, 0)
	if n > 0 {
		log.Info("read the guest agent's replies that no client had read: the agent blocks in them and would hold up the guest's shutdown", "bytes", n)
	}
	if err != nil {
		log.Debug("guest agent drain", "err", err)
	}
}
