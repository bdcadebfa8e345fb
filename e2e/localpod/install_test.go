//go:build e2e

package localpod

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
)

// The test installer's console lines (ci/testguest/build-installer.sh).
const (
	installerWrites    = "berth-installer: writing the system to /dev/vda"
	installerDone      = "berth-installer: installed, rebooting"
	installedFromDisk  = "berth-installed: booted from disk"
	installerISOName   = "berth-test-installer.iso"
	installBootTimeout = 600 * time.Second
)

// TestLocalPodInstallFromISO is the life of a VM installed from an ISO, with
// every stage real: image-fetch downloads the installer ISO from the node's
// image server, verifies and caches it, and makes a blank pet disk
// (DISK_BLANK); vmm attaches the ISO read-only after the disk in the boot
// order; the blank disk does not boot, the firmware boots the ISO, the
// installer writes a system onto /dev/vda and reboots, QEMU resets and the
// disk boots the installed system. Then the ISO is taken away (CDROMS
// emptied, as `helm upgrade` without cdrom does): the next start keeps the
// disk and boots the installed system, and the installer never runs again.
func TestLocalPodInstallFromISO(t *testing.T) {
	roottest.Require(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := FromEnv(repo)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DiskSize = "1Gi"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, filepath.Join(repo, "ci/testguest/build-installer.sh"))
	build.Stderr = os.Stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("ci/testguest/build-installer.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	iso := lines[len(lines)-1]

	p, err := Start(ctx, cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var b strings.Builder
		p.PrintTimings(&b)
		t.Logf("timings (never asserted):\n%s", b.String())
		p.Close()
	})
	url, err := p.Serve(installerISOName, iso)
	if err != nil {
		t.Fatal(err)
	}
	cdroms, _ := json.Marshal([]map[string]string{{"source": url}})
	p.Blank, p.CDROMs = true, string(cdroms)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"install", func(t *testing.T) {
			must(t, p.Stages(ctx, "install"))
			if got := p.Gets(installerISOName); got != 1 {
				t.Errorf("the ISO was downloaded %d times, want once", got)
			}
			if p.ImageGets() != 0 {
				t.Errorf("a blank disk downloaded the base image")
			}
			cached := filepath.Join(p.ImageDir, installerISOName)
			if fi, err := os.Lstat(cached); err != nil || fi.Mode().Perm() != 0o444 {
				t.Errorf("the ISO in the cache: %v %v, want a read-only file", fi, err)
			}
			if _, err := os.Stat(cached + ".sha256"); err != nil {
				t.Errorf("the ISO's record: %v", err)
			}
			rec, err := os.ReadFile(filepath.Join(p.DiskDir, p.VMName+".json"))
			if err != nil || !strings.Contains(string(rec), `"blank": true`) {
				t.Errorf("the pet disk's record: %s %v, want blank", rec, err)
			}
			t0 := time.Now()
			for _, want := range []string{installerWrites, installerDone, installedFromDisk} {
				must(t, p.waitConsole(ctx, "install", want, installBootTimeout))
				t.Logf("%q after %s", want, time.Since(t0).Round(time.Second))
			}
			c := readConsole(p, "install")
			if i, j := strings.Index(c, installerDone), strings.Index(c, installedFromDisk); i < 0 || j < i {
				t.Errorf("the installed system did not boot after the installer's reboot:\n%s", Tail(p.ConsoleLog("install"), 30))
			}
			if p.VMM.Exited() {
				t.Fatalf("vmm exited (%d) at the guest's reboot: a reboot is a reset in the same QEMU", p.VMM.Code)
			}
			_, _, err = p.VMM.Stop(ctx, p.ShutdownTimeout+15*time.Second)
			must(t, err)
		}},
		{"without-the-iso", func(t *testing.T) {
			p.CDROMs = ""
			must(t, p.StopDnsmasq(ctx))
			must(t, p.Stages(ctx, "installed"))
			must(t, p.waitConsole(ctx, "installed", installedFromDisk, installBootTimeout))
			if c := readConsole(p, "installed"); strings.Contains(c, "berth-installer:") {
				t.Errorf("the installer ran again:\n%s", Tail(p.ConsoleLog("installed"), 30))
			}
			if got := p.Gets(installerISOName); got != 1 {
				t.Errorf("the ISO was downloaded %d times in all, want once", got)
			}
			_, _, err := p.VMM.Stop(ctx, p.ShutdownTimeout+15*time.Second)
			must(t, err)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

func readConsole(p *Pod, tag string) string {
	b, _ := os.ReadFile(p.ConsoleLog(tag))
	return string(b)
}

// waitConsole waits until the console of the vmm started with tag shows
// want, failing at once when vmm exits first.
func (p *Pod) waitConsole(ctx context.Context, tag, want string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !strings.Contains(readConsole(p, tag), want) {
		select {
		case <-p.VMM.Done:
			return fmt.Errorf("vmm exited (%d) before the console showed %q; it ends:\n%s", p.VMM.Code, want, Tail(p.ConsoleLog(tag), 30))
		case <-ctx.Done():
			return fmt.Errorf("the console did not show %q within %s; it ends:\n%s", want, limit, Tail(p.ConsoleLog(tag), 30))
		case <-time.After(time.Second):
		}
	}
	return nil
}
