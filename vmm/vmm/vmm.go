// Package vmm is the stage: read the config, decide the accelerator, build the
// command line, then run and supervise QEMU.
package vmm

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/kvm"
	"github.com/berth-vm/berth/vmm/qemu"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/tap"
)

// KVMProbeTimeout bounds the KVM probe: a working KVM answers in milliseconds.
const KVMProbeTimeout = 2 * time.Second

// KVMDevice and VhostDevice are the devices vmm looks at.
const (
	KVMDevice   = "/dev/kvm"
	VhostDevice = "/dev/vhost-net"
)

// Run is vmm's main, called by stage.Main.
func Run(r stage.Run) error {
	host := config.Host{NumCPU: runtime.NumCPU(), Stat: os.Stat}
	c, err := config.FromEnv(r.Env, host)
	if err != nil {
		return err
	}
	if err := config.CheckFiles(c, host); err != nil {
		return err
	}
	if err := checkBacking(c, r.Log); err != nil {
		return err
	}
	accel, err := chooseAccel(r.Ctx, r.Log, c.Accel)
	if err != nil {
		return err
	}
	p := qemu.Plan{Config: c, Accel: accel, Vhost: canOpen(VhostDevice), VNCPassword: c.VNC && c.VNCPasswordFile != ""}
	var password string
	if p.VNCPassword {
		if password, err = config.VNCPassword(c.VNCPasswordFile); err != nil {
			return err
		}
		if len(password) > 8 {
			r.Log.Warn("VNC passwords are at most 8 characters: only the first 8 count")
		}
	}
	args := qemu.Args(p)
	if r.DryRun {
		_, err := fmt.Fprint(r.Stdout, qemu.Explain(c.QEMU, args))
		return err
	}

	if r.Ctx.Err() != nil {
		r.Log.Info("stop requested before QEMU started: nothing to shut down")
		return nil
	}
	tapFile, dev, vnet, err := tap.Attach(tap.Devices(c.TunFallback()), c.Tap)
	if err != nil {
		return fmt.Errorf("attach to the tap made by net-setup: %w", err)
	}
	r.Log.Info("attached to the tap", "tap", c.Tap, "device", dev, "vnet_hdr", vnet, "vhost", p.Vhost)

	bin, err := exec.LookPath(c.QEMU)
	if err != nil {
		tapFile.Close()
		return fmt.Errorf("QEMU binary: %w", err)
	}
	cmd := exec.Command(bin, qemu.Strings(args)...)
	cmd.ExtraFiles = []*os.File{tapFile} // fd 3 = qemu.TapFD
	cmd.Stdout = r.Stdout                // the guest console
	// QEMU's stdio chardev reads the serial port's input from stdin: /dev/null in a plain pod; the
	// terminal of `kubectl attach -it` with the chart's console.serial.interactive (stdin and tty
	// on the container). Passed as the *os.File itself, so QEMU sees the tty and makes it raw.
	cmd.Stdin = os.Stdin
	// QEMU dies with vmm, even when vmm is killed: no VM outlives its supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r.Log.Info("starting QEMU", "accel", accel, "console", consoleDesc(os.Stdin), "cpus", c.CPUs, "memory", fmt.Sprintf("%dMi", c.Memory>>20),
		"mac", c.MAC().String(), "vnc", vncDesc(p))

	sup := &Supervisor{
		Log:             r.Log,
		QMPSocket:       c.QMPSocket(),
		ShutdownTimeout: c.ShutdownTimeout,
		Reap:            os.Getpid() == 1,
	}
	if p.VNCPassword {
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
	return sup.Run(r.Ctx, cmd)
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

func canOpen(dev string) bool {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// checkBacking reads the overlay's backing file name and checks the base
// image is there, so a missing base is reported by name (image-fetch's job)
// instead of as QEMU's open error.
func checkBacking(c config.Config, log *slog.Logger) error {
	backing, err := qemu.BackingFile(c.Overlay())
	if err != nil {
		return fmt.Errorf("read the overlay %s: %w", c.Overlay(), err)
	}
	if backing == "" {
		log.Warn("the overlay has no backing file: booting it as a standalone disk", "overlay", c.Overlay())
		return nil
	}
	path := qemu.ResolveBacking(c.Overlay(), backing)
	if _, err := os.Stat(path); err != nil {
		return stage.BadInputf("IMAGE_DIR", c.ImageDir, "the overlay's base image %s is missing (%v): image-fetch downloads it; run image-fetch first", path, errUnwrap(err))
	}
	return nil
}

func errUnwrap(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}
