// Package agent is a small client of qemu-guest-agent (QGA), the agent in the
// guest that QEMU's virtio-serial channel org.qemu.guest_agent.0 reaches: JSON
// commands and one JSON reply a line over the channel's unix socket in the run
// volume. The channel is a byte stream that outlives a client: a reply a
// timed-out client left unread is still in it. So every connection first
// resynchronises, as QEMU's documentation asks: a 0xFF byte (the agent drops
// any partial command it holds), guest-sync-delimited with a random id, then
// everything up to the agent's 0xFF delimiter is skipped and replies are read
// until the one carrying that id. QEMU serves one client at a time on the
// socket: callers connect, do what they need and close.
package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
)

// Delimiter is the byte guest-sync-delimited puts before its reply, and the
// byte a client sends to make the agent drop a partial command.
const Delimiter = 0xFF

// MaxReply bounds one reply line and the stale bytes skipped up to the
// delimiter: a guest's interfaces with their addresses fit many times over.
const MaxReply = 1 << 20

// maxStale bounds the stale replies read after the delimiter before the
// sync's own (each is a reply to a command of an earlier client).
const maxStale = 64

// Error is an error reply of the agent.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("guest agent error %s: %s", e.Class, e.Desc) }

// Client is one connection to the guest agent, in sync.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the agent channel's socket at path (never through a
// symlink: fsutil.DialSocket) and resynchronises. ctx bounds both; a guest
// whose agent does not run leaves the sync unanswered until ctx ends.
func Dial(ctx context.Context, path string) (*Client, error) {
	conn, err := fsutil.DialSocket(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("guest agent: %w", err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("%w (on %s)", err, path)
	}
	return c, nil
}

// NewClient resynchronises on an open connection (Sync), bounded by ctx. On
// failure the connection is closed.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if err := c.Sync(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// bound puts ctx's deadline on the connection and ends a read or write in
// progress when ctx ends; the returned func undoes the latter.
func (c *Client) bound(ctx context.Context) func() bool {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	_ = c.conn.SetDeadline(dl)
	return context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
}

// wrap names the command and, when ctx ended (or its deadline, set on the
// connection, fired first), says so.
func wrap(ctx context.Context, what string, err error) error {
	cerr := ctx.Err()
	if _, ok := ctx.Deadline(); ok && cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("guest agent %s: %w (%v)", what, cerr, err)
	}
	return fmt.Errorf("guest agent %s: %w", what, err)
}

// Sync sends a 0xFF byte and guest-sync-delimited with a random id, skips
// everything up to the agent's 0xFF delimiter and reads replies until the
// one that returns that id; stale replies in between are dropped.
func (c *Client) Sync(ctx context.Context) error {
	defer c.bound(ctx)()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("guest agent sync: random id: %w", err)
	}
	id := uint64(binary.BigEndian.Uint32(b[:]) & 0x7fffffff) // an int the agent's JSON parser takes as it is
	cmd, _ := json.Marshal(map[string]any{"execute": "guest-sync-delimited", "arguments": map[string]uint64{"id": id}})
	if _, err := c.conn.Write(append(append([]byte{Delimiter}, cmd...), '\n')); err != nil {
		return wrap(ctx, "sync", err)
	}
	if err := c.skipToDelimiter(); err != nil {
		return wrap(ctx, "sync", err)
	}
	for i := 0; i < maxStale; i++ {
		line, err := c.readLine()
		if err != nil {
			return wrap(ctx, "sync", err)
		}
		ret, err := ParseReply(line)
		if err != nil {
			continue // a stale reply (or an error reply to a stale command): not ours
		}
		var got uint64
		if json.Unmarshal(ret, &got) == nil && got == id {
			return nil
		}
	}
	return fmt.Errorf("guest agent sync: no reply with id %d among %d replies", id, maxStale)
}

// skipToDelimiter drops bytes up to and including the first 0xFF.
func (c *Client) skipToDelimiter() error {
	for n := 0; n < MaxReply; n++ {
		b, err := c.r.ReadByte()
		if err != nil {
			return fmt.Errorf("waiting for the 0xFF delimiter: %w", err)
		}
		if b == Delimiter {
			return nil
		}
	}
	return fmt.Errorf("no 0xFF delimiter within %d bytes", MaxReply)
}

// readLine reads one non-empty line of at most MaxReply bytes, without the
// 0xFF delimiters of earlier syncs in front of it.
func (c *Client) readLine() ([]byte, error) {
	for {
		var line []byte
		for {
			frag, err := c.r.ReadSlice('\n')
			line = append(line, frag...)
			if len(line) > MaxReply {
				return nil, fmt.Errorf("a reply longer than %d bytes", MaxReply)
			}
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
		}
		line = bytes.TrimLeft(line, "\xff")
		if len(bytes.TrimSpace(line)) > 0 {
			return line, nil
		}
	}
}

// ParseReply reads one reply line: the value of "return", or the agent's
// *Error. Anything else (not JSON, neither member, both) is an error.
func ParseReply(line []byte) (json.RawMessage, error) {
	var m struct {
		Return json.RawMessage `json:"return"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &m); err != nil {
		return nil, fmt.Errorf("not a reply: %w", err)
	}
	switch {
	case m.Error != nil && m.Return != nil:
		return nil, errors.New("not a reply: both return and error")
	case m.Error != nil:
		return nil, m.Error
	case m.Return == nil || string(m.Return) == "null":
		return nil, errors.New("not a reply: no return and no error")
	}
	return m.Return, nil
}

// Execute runs cmd with optional arguments, bounded by ctx, and decodes its
// return value into out (unless nil). An error reply is an *Error.
func (c *Client) Execute(ctx context.Context, cmd string, args, out any) error {
	defer c.bound(ctx)()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("guest agent %s: %w", cmd, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return wrap(ctx, cmd, err)
	}
	line, err := c.readLine()
	if err != nil {
		return wrap(ctx, cmd, err)
	}
	ret, err := ParseReply(line)
	if err != nil {
		return fmt.Errorf("guest agent %s: %w", cmd, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(ret, out); err != nil {
		return fmt.Errorf("guest agent %s: unexpected return %.200s: %w", cmd, ret, err)
	}
	return nil
}
