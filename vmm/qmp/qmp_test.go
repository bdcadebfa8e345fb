package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeQEMU serves one QMP client on a unix socket the way QEMU does: greeting,
// capabilities, then replies from handle (nil reply: stay silent). It sends an
// event before every reply, to prove events are skipped.
func fakeQEMU(t *testing.T, greeting string, handle func(cmd string, args json.RawMessage) (reply string)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(greeting + "\n"))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					var req struct {
						Execute   string          `json:"execute"`
						Arguments json.RawMessage `json:"arguments"`
						ID        json.RawMessage `json:"id"`
					}
					if err := json.Unmarshal(line, &req); err != nil {
						return
					}
					reply := `{"return": {}}`
					if req.Execute != "qmp_capabilities" {
						reply = handle(req.Execute, req.Arguments)
					}
					if reply == "" {
						continue
					}
					c.Write([]byte(`{"event": "RTC_CHANGE", "data": {"offset": 1}, "timestamp": {"seconds": 1, "microseconds": 2}}` + "\n"))
					reply = strings.TrimSuffix(reply, "}") + `, "id": ` + string(req.ID) + "}"
					c.Write([]byte(reply + "\n"))
				}
			}()
		}
	}()
	return path
}

const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`

func TestQueryStatusFake(t *testing.T) {
	path := fakeQEMU(t, greeting, func(cmd string, _ json.RawMessage) string {
		if cmd == "query-status" {
			return `{"return": {"status": "running", "singlestep": false, "running": true}}`
		}
		return `{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.QueryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Status != "running" {
		t.Errorf("status = %+v, want running", st)
	}
	if len(c.Events) != 2 || c.Events[1].Event != "RTC_CHANGE" {
		t.Errorf("events = %+v, want two RTC_CHANGE (one before each reply)", c.Events)
	}
	_, err = c.Execute(ctx, "nonsense", nil)
	var qe *Error
	if err == nil || !errorsAs(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: err = %v, want a CommandNotFound QMP error", err)
	}
}

func TestArgumentsSent(t *testing.T) {
	got := make(chan string, 1)
	path := fakeQEMU(t, greeting, func(cmd string, args json.RawMessage) string {
		got <- cmd + " " + string(args)
		return `{"return": {}}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Do(ctx, path, "change-vnc-password", map[string]string{"password": "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != `change-vnc-password {"password":"s3cret"}` {
		t.Errorf("server saw %q", g)
	}
}

// Bad servers: no greeting, wrong greeting, silent on a command: every one
// ends with an error within the context's deadline, never a hang.
func TestBadServers(t *testing.T) {
	silent := func(string, json.RawMessage) string { return "" }
	for name, tc := range map[string]struct {
		greeting string
		handle   func(string, json.RawMessage) string
	}{
		"not JSON":        {"hello", silent},
		"no QMP greeting": {`{"foo": 1}`, silent},
		"silent":          {greeting, silent},
	} {
		t.Run(name, func(t *testing.T) {
			path := fakeQEMU(t, tc.greeting, tc.handle)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { _, err := Do(ctx, path, "query-status", nil); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("want an error")
				}
				t.Log(err)
			case <-time.After(10 * time.Second):
				t.Fatal("QMP client hung past its deadline")
			}
		})
	}
}

func TestNoSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("dial of a missing socket succeeded")
	}
}

func errorsAs(err error, target **Error) bool { return errors.As(err, target) }

// TestNotASocket: qmp.sock is in the shared run volume. A symlink there, even
// to a working QMP socket, a FIFO and a regular file are refused at once (no
// hang on the FIFO), naming what was found.
func TestNotASocket(t *testing.T) {
	real := fakeQEMU(t, greeting, func(string, json.RawMessage) string { return `{"return": {}}` })
	dir := t.TempDir()
	link, fifo, file := filepath.Join(dir, "link.sock"), filepath.Join(dir, "fifo.sock"), filepath.Join(dir, "file.sock")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, nil, 0o600)
	for path, want := range map[string]string{link: "a symlink", fifo: "not a socket", file: "not a socket"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := Dial(ctx, path)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s: connected through it", filepath.Base(path))
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to say %q", filepath.Base(path), err, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, real)
	if err != nil {
		t.Fatalf("the socket itself: %v", err)
	}
	c.Close()
}

// TestSharedClient: vmm's watch and its metrics collector share one client:
// commands from many goroutines each get their own reply (the turn lock),
// and the events that came meanwhile are all kept for TakeEvents. Run with
// -race: without the lock the replies interleave on the wire.
func TestSharedClient(t *testing.T) {
	path := fakeQEMU(t, greeting, func(cmd string, _ json.RawMessage) string {
		return `{"return": "` + cmd + `"}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const goroutines, each = 8, 25
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		go func() {
			for i := 0; i < each; i++ {
				cmd := fmt.Sprintf("cmd-%d-%d", g, i)
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				ret, err := c.Execute(cctx, cmd, nil)
				ccancel()
				if err != nil {
					errs <- err
					return
				}
				if string(ret) != `"`+cmd+`"` {
					errs <- fmt.Errorf("%s got the reply %s", cmd, ret)
					return
				}
				if i%5 == 0 {
					c.TakeEvents()
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < goroutines; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestTurnBoundedByContext: a command waiting for the turn of a shared
// client (the other holder waits on a QEMU that does not answer) gives up
// when its own context ends, instead of waiting for the other's deadline.
func TestTurnBoundedByContext(t *testing.T) {
	path := fakeQEMU(t, greeting, func(cmd string, _ json.RawMessage) string {
		if cmd == "slow" {
			return ""
		}
		return `{"return": {}}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	slowStarted := make(chan struct{})
	go func() {
		close(slowStarted)
		c.Execute(ctx, "slow", nil) // holds the turn until ctx (10 s) ends
	}()
	<-slowStarted
	for !c.busy() {
		time.Sleep(time.Millisecond)
	}
	qctx, qcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer qcancel()
	_, err = c.Execute(qctx, "query-status", nil)
	if err == nil || !strings.Contains(err.Error(), "turn") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the wait for the turn to end with the context", err)
	}
}
