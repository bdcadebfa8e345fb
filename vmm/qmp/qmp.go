// Package qmp is a small QEMU Machine Protocol client: connect to the unix
// socket, read the greeting, negotiate capabilities, execute commands. Events
// that arrive while waiting for a reply are kept (Events) and otherwise
// ignored. QEMU serves one client at a time on a socket, so callers connect,
// do what they need and close. A Client takes turns: its methods may be
// called from several goroutines (vmm's watch and its metrics collector
// share vmm's own connection), one command on the wire at a time.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
)

// Client is one QMP connection.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	id   atomic.Uint64
	// turn (a one-slot semaphore, so a command can stop waiting for it when
	// its context ends) is held for one command from send to reply, and
	// around Events and the deadline: two goroutines never interleave on
	// the wire.
	turn chan struct{}
	// Events kept while waiting for replies; read them with TakeEvents
	// when the client is shared.
	Events []Event
}

// Event is an asynchronous QMP event.
type Event struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// Error is an error reply from QEMU.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("QMP error %s: %s", e.Class, e.Desc) }

type message struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	ID     json.RawMessage `json:"id"`
}

// Dial connects to the socket, reads the greeting and sends
// qmp_capabilities. The context bounds the whole handshake; its deadline (if
// any) stays on the connection for later commands unless SetDeadline changes it.
//
// The socket is in the shared run volume: a symlink or anything but a socket
// at path is refused, never connected through. The check is on a descriptor
// (O_PATH|O_NOFOLLOW) and the connection goes through that very descriptor
// (/proc/self/fd/N), so nothing swapped in between is followed either.
func Dial(ctx context.Context, path string) (*Client, error) {
	conn, err := fsutil.DialSocket(ctx, path)
	var notOwn *fsutil.NotOwnFileError
	if errors.As(err, &notOwn) {
		what := "not a socket"
		if strings.HasPrefix(notOwn.Found, "a symlink") {
			what = "a symlink"
		}
		return nil, fmt.Errorf("connect to QMP %s: it is %s, not QEMU's socket: refusing to use it", path, what)
	}
	if err != nil {
		// DialSocket's error names the path as "connect to <path>": say it is QMP's instead.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("connect to QMP %s: %w", path, err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("%w (on %s)", err, path)
	}
	return c, nil
}

// NewClient speaks QMP on an open connection (vmm's own monitor, one end of
// a socket pair QEMU inherited): it reads the greeting and negotiates
// capabilities, bounded by ctx as in Dial. On failure the connection is
// closed.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReader(conn), turn: make(chan struct{}, 1)}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	m, err := c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	if m.QMP == nil {
		conn.Close()
		return nil, errors.New("QMP greeting: no \"QMP\" object")
	}
	if _, err := c.execute("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP capabilities negotiation: %w", err)
	}
	return c, nil
}

// TakeEvents returns the events kept since the last call and forgets them:
// a long-lived client (vmm's own) must not keep every event forever.
func (c *Client) TakeEvents() []Event {
	c.turn <- struct{}{}
	defer func() { <-c.turn }()
	ev := c.Events
	c.Events = nil
	return ev
}

// SetDeadline bounds the following commands (a command whose context has a
// deadline sets its own).
func (c *Client) SetDeadline(t time.Time) error {
	c.turn <- struct{}{}
	defer func() { <-c.turn }()
	return c.conn.SetDeadline(t)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Execute runs a command with optional arguments and returns its "return" value.
// The context's deadline, if any, bounds it on the wire: a command never
// runs under the deadline another goroutine set for its own.
func (c *Client) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("QMP %s: waiting for the connection's turn: %w", cmd, ctx.Err())
	}
	defer func() { <-c.turn }()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ret, err := c.execute(cmd, args)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, ctx.Err())
	}
	return ret, err
}

func (c *Client) execute(cmd string, args any) (json.RawMessage, error) {
	id := c.id.Add(1)
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: send: %w", cmd, err)
	}
	for {
		m, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if m.Event != "" {
			c.Events = append(c.Events, Event{Event: m.Event, Data: m.Data})
			continue
		}
		if string(m.ID) != fmt.Sprint(id) {
			continue // a reply to something else (e.g. a stale id): not ours
		}
		if m.Error != nil {
			return nil, m.Error
		}
		if m.Return == nil {
			return nil, fmt.Errorf("QMP %s: reply without \"return\"", cmd)
		}
		return m.Return, nil
	}
}

func (c *Client) read() (message, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, net.ErrClosed) || len(line) == 0 {
			return message{}, fmt.Errorf("read: %w", err)
		}
		return message{}, fmt.Errorf("read (partial line): %w", err)
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, fmt.Errorf("bad JSON from QEMU: %w", err)
	}
	return m, nil
}

// Status is the reply of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus runs query-status.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	ret, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(ret, &s); err != nil {
		return s, fmt.Errorf("query-status reply: %w", err)
	}
	return s, nil
}

// Query runs a command without arguments and decodes its "return" value into out.
func (c *Client) Query(ctx context.Context, cmd string, out any) error {
	ret, err := c.Execute(ctx, cmd, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(ret, out); err != nil {
		return fmt.Errorf("%s reply: %w", cmd, err)
	}
	return nil
}

// Do dials, runs one command and closes: the way vmm and the probes use QMP,
// so the socket is free for the next client.
func Do(ctx context.Context, path, cmd string, args any) (json.RawMessage, error) {
	c, err := Dial(ctx, path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Execute(ctx, cmd, args)
}
