package watch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"

	"github.com/berth-vm/berth/common/disks"
)

// fakeMonitor answers QMP on one end of a pipe as QEMU does on vmm's own
// monitor: the guest is paused (io-error, drive disk-data nospace) until vmm
// sends cont, then runs; block_resize changes the drive's size.
type fakeMonitor struct {
	mu       sync.Mutex
	status   string
	size     uint64
	commands []string
}

func (f *fakeMonitor) serve(t *testing.T, conn net.Conn) {
	defer conn.Close()
	fmt.Fprintln(conn, `{"QMP": {"version": {}, "capabilities": []}}`)
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			t.Errorf("bad request %q", sc.Text())
			return
		}
		f.mu.Lock()
		f.commands = append(f.commands, req.Execute)
		var ret any = map[string]any{}
		var qerr any
		switch req.Execute {
		case "query-status":
			ret = map[string]any{"status": f.status, "running": f.status == "running"}
		case "query-block":
			io := "ok"
			if f.status == "io-error" {
				io = "nospace"
			}
			ret = []any{map[string]any{"device": "disk-data", "io-status": io,
				"inserted": map[string]any{"image": map[string]any{"virtual-size": f.size}}}}
		case "cont":
			if f.status == "guest-panicked" { // as QEMU: a panicked guest needs a reset first
				qerr = map[string]any{"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}
			} else {
				f.status = "running"
			}
		case "system_reset":
			if f.status == "guest-panicked" {
				f.status = "prelaunch"
			}
		case "block_resize":
			var a struct {
				Device string `json:"device"`
				Size   uint64 `json:"size"`
			}
			json.Unmarshal(req.Arguments, &a)
			f.size = a.Size
		}
		f.mu.Unlock()
		reply := map[string]any{"return": ret, "id": req.ID}
		if qerr != nil {
			reply = map[string]any{"error": qerr, "id": req.ID}
		}
		b, _ := json.Marshal(reply)
		// An event before the reply, as QEMU sends them: the client keeps it for TakeEvents.
		fmt.Fprintln(conn, `{"event": "BLOCK_IO_ERROR", "data": {"device": "disk-data", "nospace": true}}`)
		if req.Execute == "system_reset" { // as QEMU: the reset is an event too
			fmt.Fprintln(conn, `{"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}`)
		}
		conn.Write(append(b, '\n'))
	}
}

// TestWatchResumesAndGrows: against a fake monitor, a guest paused on a full
// volume (a temporary directory with far more than 64 MiB free) is logged,
// written to the status file as io-error, resumed with cont, then running;
// a disk below its target on a volume with room is grown with block_resize.
func TestWatchResumesAndGrows(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "data.qcow2")
	os.WriteFile(disk, []byte("x"), 0o644)
	if u, err := disks.VolumeUsage(dir); err != nil || u.Avail < RoomToResume(u.Total)+4<<20 {
		t.Skipf("the test's volume has too little room (%+v, %v)", u, err)
	}
	mine, theirs := net.Pipe()
	f := &fakeMonitor{status: "io-error", size: 1 << 20}
	go f.serve(t, theirs)
	// The handshake's deadline (as vmm's 60 s) must not stay on the
	// connection: the watch outlives it.
	hctx, hcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	c, err := qmp.NewClient(hctx, mine)
	hcancel()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs logBuffer
	w := &Watch{
		Log:         slog.New(slog.NewTextHandler(&logs, nil)),
		QMP:         c,
		Disks:       []Disk{{Name: "data", Drive: "disk-data", Path: disk, Volume: dir, Target: Target{Format: "raw", Size: 2 << 20}}},
		StatusFile:  filepath.Join(dir, status.FileName),
		StatusEvery: 20 * time.Millisecond, RoomEvery: 20 * time.Millisecond, GrowEvery: 50 * time.Millisecond,
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	var seen statusTrail
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := seen.look(w.StatusFile)
		f.mu.Lock()
		grown := f.size == 2<<20
		f.mu.Unlock()
		if s.QEMU == "running" && grown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not running and grown within 20 s: statuses %q, size %d", seen, f.size)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	out := logs.String()
	for _, want := range []string{
		`level=ERROR msg="the guest is paused: a disk's volume is full" disk=data drive=disk-data path=` + disk + ` volume=` + dir + ` used=`,
		`level=INFO msg="resuming the guest: its full volumes have room again" data_avail=`,
		`level=INFO msg="the guest runs again"`,
		`level=INFO msg="grew a disk to its size: the guest sees the new size now" disk=data drive=disk-data from=1.0Mi to=2.0Mi`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if seen[0] == "running" || !containsStatus(seen, "io-error") {
		t.Errorf("status file went %q, want io-error before running", seen)
	}
	if len(c.Events) != 0 {
		t.Errorf("events pile up on the client: %d kept", len(c.Events))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := count(f.commands, "cont"); n != 1 {
		t.Errorf("cont sent %d times, want 1 (commands %q)", n, f.commands)
	}
}

// TestWatchPanic: a guest whose kernel panicked (guest-panicked) is named in
// the log and the status file; ON_PANIC=reset resets it in the same QEMU
// (system_reset, then cont) until it runs; ON_PANIC=restart asks the
// supervisor to end QEMU, and neither resets nor resumes.
func TestWatchPanic(t *testing.T) {
	for _, onPanic := range []string{config.PanicReset, config.PanicRestart} {
		t.Run(onPanic, func(t *testing.T) {
			dir := t.TempDir()
			mine, theirs := net.Pipe()
			f := &fakeMonitor{status: "guest-panicked"}
			go f.serve(t, theirs)
			c, err := qmp.NewClient(context.Background(), mine)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var logs logBuffer
			aborted := make(chan error, 1)
			var resets atomic.Int32
			w := &Watch{
				Reset:       func(time.Time) { resets.Add(1) },
				Log:         slog.New(slog.NewTextHandler(&logs, nil)),
				QMP:         c,
				StatusFile:  filepath.Join(dir, status.FileName),
				StatusEvery: 20 * time.Millisecond, RoomEvery: time.Hour, GrowEvery: time.Hour,
				OnPanic: onPanic,
				Abort:   func(err error) { aborted <- err },
			}
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			var seen statusTrail
			for {
				s := seen.look(w.StatusFile)
				if onPanic == config.PanicReset && s.QEMU == "running" {
					break
				}
				if onPanic == config.PanicRestart && len(aborted) > 0 {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("statuses %q; aborted %d", seen, len(aborted))
				}
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			<-done
			out := logs.String()
			if seen[0] != "guest-panicked" {
				t.Errorf("status file went %q, want guest-panicked first", seen)
			}
			if s, _ := status.Read(w.StatusFile); onPanic == config.PanicRestart && s.Reason != "the guest's kernel panicked (pvpanic)" {
				t.Errorf("status reason %q", s.Reason)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			switch onPanic {
			case config.PanicReset:
				if !strings.Contains(out, `level=ERROR msg="the guest's kernel panicked: resetting it, it boots again in the same QEMU (ON_PANIC=reset)"`) ||
					!strings.Contains(out, `msg="the guest runs again after its reset: it boots again"`) {
					t.Errorf("log:\n%s", out)
				}
				if count(f.commands, "system_reset") != 1 || count(f.commands, "cont") != 1 {
					t.Errorf("commands %q: want one system_reset and one cont", f.commands)
				}
				if n := resets.Load(); n != 1 {
					t.Errorf("Reset told of %d new boots, want 1 (the reset after the panic)", n)
				}
			case config.PanicRestart:
				err := <-aborted
				if !strings.Contains(err.Error(), "ON_PANIC=restart") || !strings.Contains(out, "ending QEMU so the container restarts") {
					t.Errorf("abort %v; log:\n%s", err, out)
				}
				if count(f.commands, "system_reset")+count(f.commands, "cont") != 0 {
					t.Errorf("commands %q: ON_PANIC=restart must neither reset nor resume", f.commands)
				}
				if n := resets.Load(); n != 0 {
					t.Errorf("Reset told of %d new boots without a reset", n)
				}
			}
		})
	}
}

func containsStatus(list []string, s string) bool { return count(list, s) > 0 }

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestEventsLog: each reset is one line saying what it was, and marks a new
// boot; a watchdog's reset is the watchdog's line, not a reboot's.
func TestEventsLog(t *testing.T) {
	ev := func(name, data string) qmp.Event { return qmp.Event{Event: name, Data: json.RawMessage(data)} }
	for _, tt := range []struct {
		name  string
		evs   []qmp.Event
		want  []string // substrings, one line each, in order
		reset bool
	}{
		{"a reboot", []qmp.Event{ev("RESET", `{"guest":true,"reason":"guest-reset"}`)},
			[]string{"the guest reset itself (a reboot)"}, true},
		{"one reset as two events", []qmp.Event{ev("RESET", `{"guest":true,"reason":"guest-reset"}`), ev("RESET", `{"guest":true,"reason":"guest-reset"}`)},
			[]string{"the guest reset itself (a reboot)"}, true},
		{"vmm's own reset after a panic", []qmp.Event{ev("RESET", `{"guest":false,"reason":"host-qmp-system-reset"}`)}, nil, true},
		{"the watchdog resets the guest", []qmp.Event{ev("WATCHDOG", `{"action":"reset"}`), ev("RESET", `{"guest":true,"reason":"guest-reset"}`)},
			[]string{"the guest's watchdog fired: the guest stopped feeding it; QEMU resets it"}, true},
		{"the watchdog pauses it", []qmp.Event{ev("WATCHDOG", `{"action":"pause"}`)},
			[]string{"the guest's watchdog fired: the guest stopped feeding it\" action=pause"}, false},
		{"another event", []qmp.Event{ev("STOP", `{}`)}, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log logBuffer
			w := &Watch{Log: slog.New(slog.NewTextHandler(&log, nil))}
			w.events(tt.evs)
			lines := strings.Split(strings.TrimSpace(log.String()), "\n")
			if log.String() == "" {
				lines = nil
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(tt.want), log.String())
			}
			for i, want := range tt.want {
				if !strings.Contains(lines[i], want) {
					t.Errorf("line %d = %s, want it to say %q", i, lines[i], want)
				}
			}
			if w.reset != tt.reset {
				t.Errorf("a new boot marked: %v, want %v", w.reset, tt.reset)
			}
		})
	}
}

// logBuffer holds the watch's log lines; the test reads them while the watch may still write.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// statusTrail is the sequence of statuses a test saw in the status file, each change once.
type statusTrail []string

// look reads the status file and records its status when it changed (a file not written yet is
// not a status); it returns what it read.
func (tr *statusTrail) look(file string) status.Status {
	s, err := status.Read(file)
	if err == nil && (len(*tr) == 0 || (*tr)[len(*tr)-1] != s.QEMU) {
		*tr = append(*tr, s.QEMU)
	}
	return s
}
