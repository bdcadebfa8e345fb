package metrics

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"
	"github.com/berth-vm/berth/vmm/watch"
)

// TestRealQEMU scrapes a real QEMU: no guest image, only -nodefaults, a
// small blank qcow2 on virtio-blk (SeaBIOS reads its boot sector, so the
// read counters move) and TCG. What it parses is what a Prometheus reads.
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 not installed (ci/install-deps.sh installs qemu-system-x86): %v", err)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command(bin, "-nodefaults", "-display", "none", "-machine", "q35", "-accel", "tcg,thread=multi", "-smp", "2", "-m", "64",
		"-drive", "if=none,id=disk0,file="+disk+",format=qcow2", "-device", "virtio-blk-pci,drive=disk0,serial=root",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var client *qmp.Client
	for client == nil {
		if client, err = qmp.Dial(ctx, sock); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("QMP never answered: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer client.Close()
	c := New(Sources{QMP: func() *qmp.Client { return client }, Tap: "lo", Disks: map[string]string{"disk0": "root"}, Memory: 64 << 20, CPUs: 2})
	c.QEMUStarted(cmd.Process.Pid, started)

	// vmm's watch shares the connection, polling every 10 ms while the scrapes run: each side
	// gets its own replies (qmp.Client takes turns).
	wctx, wcancel := context.WithCancel(ctx)
	watched := make(chan error, 1)
	statusFile := filepath.Join(dir, status.FileName)
	w := &watch.Watch{Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), QMP: client, StatusFile: statusFile,
		StatusEvery: 10 * time.Millisecond, RoomEvery: time.Hour, GrowEvery: 50 * time.Millisecond,
		Disks: []watch.Disk{{Name: "root", Drive: "disk0", Path: disk, Volume: dir}}}
	go func() { watched <- w.Run(wctx) }()
	defer func() {
		wcancel()
		if err := <-watched; err != nil {
			t.Errorf("the watch beside the scrapes: %v", err)
		}
		if st, err := status.Read(statusFile); err != nil || st.QEMU != status.Running {
			t.Errorf("the watch's status file: %+v, %v; want running", st, err)
		}
	}()

	// SeaBIOS reads the disk's first sector within moments of the start; 20 scrapes at least.
	for n := 1; ; n++ {
		mfs := scrape(t, c)
		reads, _ := value(mfs, "berth_vm_block_ops_total", "drive", "disk0", "disk", "root", "op", "read")
		if reads > 0 && n >= 20 {
			for _, tt := range []struct {
				name   string
				labels []string
			}{
				{"berth_qmp_up", nil},
				{"berth_vm_run_state", []string{"state", "running"}},
				{"berth_vm_vcpu_seconds_total", []string{"vcpu", "0"}},
				{"berth_vm_vcpu_seconds_total", []string{"vcpu", "1"}},
				{"berth_qemu_cpu_seconds_total", nil},
				{"berth_qemu_resident_memory_bytes", nil},
				{"berth_vm_block_bytes_total", []string{"drive", "disk0", "op", "read"}},
				{"berth_vm_network_bytes_total", []string{"interface", "lo", "direction", "receive"}},
			} {
				if v, ok := value(mfs, tt.name, tt.labels...); !ok || (tt.name != "berth_vm_vcpu_seconds_total" && v <= 0) {
					t.Errorf("%s%v = %v (present %v), want it present and above 0", tt.name, tt.labels, v, ok)
				}
			}
			if v, _ := value(mfs, "berth_vm_block_bytes_total", "drive", "disk0", "op", "read"); v < 512 {
				t.Errorf("read %v bytes in %v reads: want at least a sector", v, reads)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no read on disk0 in a minute: %v", mfs["berth_vm_block_ops_total"])
		}
		time.Sleep(200 * time.Millisecond)
	}
}
