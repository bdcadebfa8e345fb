// Package swtpm gives the VM a TPM 2.0 whose state survives restarts: swtpm
// (Debian's) as vmm's child, its state in a directory on the VM's disk volume
// beside the pet disk, its control channel one end of a socket pair whose
// other end QEMU inherits (-chardev socket,fd=; -tpmdev emulator): nothing in
// the shared run volume, nobody else can reach the TPM.
//
// The state directory follows the pet disk's rules: made once (0700), with a
// JSON record beside it; a directory without its record, anything in it that
// is not a regular file (a symlink to the pet disk), or a record saying the
// TPM was initialised while its state file is gone (a blank TPM would lose
// every key sealed to it: BitLocker, LUKS) is refused (exit 2), never
// replaced.
package swtpm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/lastline"
)

// StateFile is where swtpm keeps a TPM 2.0's permanent state in its directory.
const StateFile = "tpm2-00.permall"

// StateDir is the VM's TPM state directory, DISK_DIR/<VM_NAME>.tpm.
func StateDir(diskDir, vm string) string { return filepath.Join(diskDir, vm+".tpm") }

// RecordPath is the state's record, DISK_DIR/<VM_NAME>.tpm.json.
func RecordPath(diskDir, vm string) string { return filepath.Join(diskDir, vm+".tpm.json") }

// Record says what the state directory is.
type Record struct {
	Version     string `json:"version"`               // "2.0"
	Created     string `json:"created"`               // RFC 3339, UTC
	Initialized string `json:"initialized,omitempty"` // when swtpm's state file was first seen: from then on it must exist
}

// State is a VM's TPM state as found.
type State struct {
	Dir, RecordPath string
	Exists          bool // the directory and its record exist
	Record          Record
}

// Inspect reads the state directory and its record without changing
// anything; what it refuses is exit 2 naming DISK_DIR or TPM.
func Inspect(diskDir, vm string) (State, error) {
	s := State{Dir: StateDir(diskDir, vm), RecordPath: RecordPath(diskDir, vm)}
	fi, err := os.Lstat(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A record alone is stale (a crash before the directory was made), unless it says the
		// TPM was initialised: then its state is gone.
		if rec, rerr := readRecord(s.RecordPath); rerr == nil && rec.Initialized != "" {
			return s, stage.BadInputf("TPM", "true", "the VM's TPM state directory %s is gone, though its TPM was initialised (%s, record %s): refusing to give the guest a blank TPM "+
				"(keys sealed to it, e.g. BitLocker's or LUKS's, would be lost); restore the directory, or remove the record to start with a new TPM", s.Dir, rec.Initialized, s.RecordPath)
		}
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("TPM state: %w", err)
	}
	if !fi.IsDir() {
		return s, stage.BadInputf("DISK_DIR", diskDir, "the TPM state directory %s is %s, not a directory: refused, left as it is", s.Dir, fsutil.Describe(fi.Mode()))
	}
	s.Record, err = readRecord(s.RecordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return s, stage.BadInputf("DISK_DIR", diskDir, "the TPM state directory %s exists but its record %s does not: whose TPM it is is unknown; write the record or move the directory away (the VM then gets a new, blank TPM)", s.Dir, s.RecordPath)
	}
	if err != nil {
		return s, stage.BadInputf("DISK_DIR", diskDir, "the TPM state's record %s: %v", s.RecordPath, err)
	}
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return s, fmt.Errorf("TPM state: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return s, stage.BadInputf("DISK_DIR", diskDir, "the TPM state directory %s holds %s, which is %s, not a regular file: swtpm would follow it; refused, left as it is", s.Dir, e.Name(), fsutil.Describe(e.Type()))
		}
	}
	state := filepath.Join(s.Dir, StateFile)
	if _, err := os.Lstat(state); errors.Is(err, fs.ErrNotExist) && s.Record.Initialized != "" {
		return s, stage.BadInputf("TPM", "true", "the VM's TPM state %s is gone, though its TPM was initialised (%s, record %s): refusing to give the guest a blank TPM "+
			"(keys sealed to it, e.g. BitLocker's or LUKS's, would be lost); restore the file, or remove the record to start with a new TPM", state, s.Record.Initialized, s.RecordPath)
	}
	s.Exists = true
	return s, nil
}

// Ensure makes the state directory (0700) and its record when they do not
// exist; the record first, so a directory in place always has one. s is
// updated to what is there.
func Ensure(s *State) (created bool, err error) {
	if s.Exists {
		return false, nil
	}
	rec := Record{Version: "2.0", Created: time.Now().UTC().Format(time.RFC3339)}
	if err := writeRecord(s.RecordPath, rec); err != nil {
		return false, err
	}
	if err := os.Mkdir(s.Dir, 0o700); err != nil {
		return false, fmt.Errorf("TPM state directory: %w", err)
	}
	s.Exists, s.Record = true, rec
	return true, fsutil.SyncDir(filepath.Dir(s.Dir))
}

// MarkInitialized records, once, that swtpm's state file exists: from then on
// its absence is refused (Inspect). It says whether the record says so now (a
// no-op until the file exists).
func MarkInitialized(s *State) (bool, error) {
	if s.Record.Initialized != "" {
		return true, nil
	}
	if fi, err := os.Lstat(filepath.Join(s.Dir, StateFile)); err != nil || !fi.Mode().IsRegular() {
		return false, nil
	}
	rec := s.Record
	rec.Version = "2.0"
	rec.Initialized = time.Now().UTC().Format(time.RFC3339)
	if err := writeRecord(s.RecordPath, rec); err != nil {
		return false, err
	}
	s.Record = rec
	return true, nil
}

// readRecord reads a record without following a symlink, at most 64 KiB.
func readRecord(path string) (Record, error) {
	var rec Record
	b, err := fsutil.ReadRecord(path)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Version != "2.0" {
		return rec, fmt.Errorf("not a valid record (want version 2.0): %v", err)
	}
	return rec, nil
}

func writeRecord(path string, rec Record) error {
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("TPM state's record: %w", err)
	}
	return nil
}

// ClientFD is the descriptor swtpm finds its control channel on (ExtraFiles[0]),
// LogFD the one it logs to (ExtraFiles[1], the same pipe as its stderr).
// swtpm 0.7 closes fd 2 when given --log fd=N, so its log cannot be fd 2:
// with "fd=2" it closes its log before the first line and exits 1, silent.
const (
	ClientFD = 3
	LogFD    = 4
)

// Args is swtpm's command line: a TPM 2.0, its state in dir (files 0600), its
// control channel the inherited connected socket, ending when QEMU closes it,
// its log on LogFD (level 1: errors and warnings).
func Args(dir string) []string {
	return []string{"socket", "--tpm2", "--tpmstate", "dir=" + dir + ",mode=0600",
		"--ctrl", fmt.Sprintf("type=unixio,clientfd=%d", ClientFD), "--terminate",
		"--log", fmt.Sprintf("fd=%d,level=1", LogFD)}
}

// Process is a running swtpm.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	last lastline.Recorder
}

// Start runs bin with Args(dir) and returns it with QEMU's end of the control
// channel (the caller passes it to QEMU). swtpm dies with vmm (SIGTERM: it
// saves its state and exits).
func Start(log *slog.Logger, bin, dir string) (*Process, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket pair for swtpm: %w", err)
	}
	mine, qemuEnd := os.NewFile(uintptr(fds[0]), "swtpm-ctrl"), os.NewFile(uintptr(fds[1]), "qemu-tpm-ctrl")
	defer mine.Close()
	p := &Process{cmd: exec.Command(bin, Args(dir)...), done: make(chan struct{})}
	logR, logW, err := os.Pipe()
	if err != nil {
		qemuEnd.Close()
		return nil, nil, fmt.Errorf("log pipe for swtpm: %w", err)
	}
	p.cmd.ExtraFiles = []*os.File{mine, logW}
	p.cmd.Stderr = logW
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	err = p.cmd.Start()
	logW.Close()
	if err != nil {
		logR.Close()
		qemuEnd.Close()
		return nil, nil, fmt.Errorf("start swtpm (%s): %w", bin, err)
	}
	stderr := logR
	go func() {
		p.last.Copy(stderr, func(line string) {
			if line = strings.TrimSpace(line); line != "" {
				log.Warn("swtpm", "says", line)
			}
		}, nil)
		stderr.Close()
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	log.Info("swtpm started: the VM's TPM 2.0", "pid", p.cmd.Process.Pid, "state", dir)
	return p, qemuEnd, nil
}

// Done is closed when swtpm has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid is swtpm's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// ExitError says how swtpm ended and its last message.
func (p *Process) ExitError() error {
	<-p.done
	msg := p.last.Last()
	if msg == "" {
		msg = "(nothing on stderr)"
	}
	how := "exited 0"
	if p.err != nil {
		how = p.err.Error()
	}
	return fmt.Errorf("swtpm, the VM's TPM, ended (%s) while QEMU ran; its last message: %s", how, msg)
}

// Stop waits for swtpm to end by itself once QEMU has closed its channel
// (--terminate), then SIGTERM (swtpm saves its state), then SIGKILL.
func (p *Process) Stop(log *slog.Logger, grace time.Duration) {
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	log.Warn("swtpm still runs after QEMU ended: SIGTERM")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		log.Warn("swtpm still runs after SIGTERM: SIGKILL")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
