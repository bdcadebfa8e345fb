package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
)

// DrainQuiet is how long Drain holds a connection with nothing coming, and
// then waits before the next one.
const DrainQuiet = time.Second

// Drain keeps reading the agent channel's socket at path, dropping
// everything, until ctx ends; it returns how many bytes it dropped. vmm runs
// it while the guest shuts down.
//
// Why: qemu-guest-agent (qga/channel-posix.c, ga_channel_write_all, in
// QEMU 7.2, Debian 12's) writes a reply in a loop that retries EAGAIN
// without end, and a virtio-serial port whose host side has no client gives
// EAGAIN. A client that gave up before its reply came (a timeout, a killed
// `vmm agent`) leaves the agent spinning there: a guest vCPU at 100 %, and a
// main loop that never sees SIGTERM, so the guest's shutdown waits systemd's
// stop timeout (90 s) for it, past SHUTDOWN_TIMEOUT's default of 60 s. A
// client on the socket lets the write finish and the agent stop.
//
// QEMU serves one client at a time, so Drain lets go after quiet (DrainQuiet
// when 0) with nothing coming and connects again quiet later: a `vmm agent
// thaw` waiting for the socket still gets its turn.
func Drain(ctx context.Context, path string, quiet time.Duration) (int64, error) {
	if quiet <= 0 {
		quiet = DrainQuiet
	}
	var total int64
	var last error
	for ctx.Err() == nil {
		n, err := drainOnce(ctx, path, quiet)
		total += n
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(quiet):
		}
	}
	return total, last
}

// drainOnce reads one connection until quiet passes with nothing coming.
func drainOnce(ctx context.Context, path string, quiet time.Duration) (int64, error) {
	conn, err := fsutil.DialSocket(ctx, path)
	if err != nil {
		return 0, fmt.Errorf("guest agent drain: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var n int64
	buf := make([]byte, 32<<10)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(quiet))
		m, err := conn.Read(buf)
		n += int64(m)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, io.EOF), ctx.Err() != nil:
			return n, nil // quiet, QEMU closed the channel, or done
		default:
			return n, fmt.Errorf("guest agent drain: %w", err)
		}
	}
}
