package probe

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

// BannerUsage is `vmm probe banner`'s help: the chart's helm test runs it in
// the vmm image, so the test needs no third-party image.
const BannerUsage = "usage: vmm probe banner [-within 60s] [-prefix SSH-] HOST:PORT\n" +
	"  connects to HOST:PORT until its first line starts with PREFIX (every 2 s, each try bounded by 5 s,\n" +
	"  all within -within) and prints it; exit 0 yes, 1 no, 2 bad arguments.\n" +
	"  A HOST still in $(...) form is a Kubernetes variable the kubelet could not expand\n" +
	"  (helm test: the test Service was not there when the pod started).\n"

// How long `vmm probe banner` gives each try, and waits between tries.
const (
	BannerTry   = 5 * time.Second
	BannerEvery = 2 * time.Second
	// MaxBanner bounds the line read.
	MaxBanner = 256
)

// bannerMain is `vmm probe banner`; args are what follows "banner".
func bannerMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmm probe banner", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	within := fs.Duration("within", 60*time.Second, "")
	prefix := fs.String("prefix", "SSH-", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, BannerUsage)
			return stage.ExitOK
		}
		fmt.Fprintf(stderr, "vmm probe banner: bad input: %v (vmm probe banner -h)\n", err)
		return stage.ExitBadInput
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "vmm probe banner: bad input: arguments %q: want exactly one HOST:PORT (vmm probe banner -h)\n", fs.Args())
		return stage.ExitBadInput
	}
	addr := fs.Arg(0)
	if *within <= 0 || *within > time.Hour {
		fmt.Fprintf(stderr, "vmm probe banner: bad input: -within %s: want more than 0 and at most 1h\n", *within)
		return stage.ExitBadInput
	}
	if strings.Contains(addr, "$(") {
		fmt.Fprintf(stderr, "vmm probe banner: %q holds a variable the kubelet could not expand: the Service it names did not exist when this pod started\n", addr)
		return stage.ExitFailure
	}
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		fmt.Fprintf(stderr, "vmm probe banner: bad input: %q: want HOST:PORT with a port from 1 to 65535\n", addr)
		return stage.ExitBadInput
	}
	ctx, cancel := context.WithTimeout(context.Background(), *within)
	defer cancel()
	line, err := WaitBanner(ctx, addr, *prefix, BannerTry, BannerEvery)
	if err != nil {
		fmt.Fprintf(stderr, "vmm probe banner: %s: no line starting with %q within %s: %s\n", addr, *prefix, *within, oneLine(err))
		return stage.ExitFailure
	}
	fmt.Fprintf(stdout, "vmm probe banner: %s answers: %s\n", addr, line)
	return stage.ExitOK
}

// WaitBanner connects to addr every `every` (each try bounded by try) until
// its first line starts with prefix, and returns that line; or ctx ends, and
// the last try's error says why.
func WaitBanner(ctx context.Context, addr, prefix string, try, every time.Duration) (string, error) {
	for {
		line, err := readBanner(ctx, addr, try)
		if err == nil && !strings.HasPrefix(line, prefix) {
			err = fmt.Errorf("the first line is %q", line)
		}
		if err == nil {
			return line, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(every):
		}
	}
}

// readBanner reads the first line (at most MaxBanner bytes, without its
// line end) that addr sends.
func readBanner(ctx context.Context, addr string, try time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, try)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, MaxBanner)).ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return "", fmt.Errorf("reading the first line: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
