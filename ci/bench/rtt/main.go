// Command rtt measures TCP connect + 1-byte round trips for the NAT and conntrack benchmarks
// (ci/bench/nat.sh, ci/bench/conntrack.sh). Not part of Berth; a bench tool with its own module.
//
//	rtt serve ADDR                      accept; per connection: read 1 byte, write it back, close
//	rtt connect [flags] ADDR...         N times: dial, write 1 byte, read 1 byte, close
//	rtt pingpong [flags] ADDR...        one connection per ADDR, N 1-byte round trips on each
//
// With several ADDRs the round trips alternate between them (A B A B ...), so a slow moment of a
// shared machine hits every address alike: the differences between them are what is compared.
// connect and pingpong print one line per ADDR:
// "addr=A n=N ok=K fail=F min_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. wall_ms=.."
// and the first errors on stderr. Every dial and read has a deadline (-timeout).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: rtt serve|connect|pingpong [flags] ADDR")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	n := fs.Int("n", 1000, "round trips (connect: connections)")
	conc := fs.Int("c", 1, "concurrent workers (connect)")
	timeout := fs.Duration("timeout", 3*time.Second, "deadline of each dial and round trip")
	warm := fs.Int("warmup", 50, "untimed round trips first")
	rst := fs.Bool("rst", false, "connect: close with RST (SO_LINGER 0), no TIME_WAIT on the client")
	fs.Parse(os.Args[2:])
	if fs.NArg() < 1 || (mode == "serve" && fs.NArg() != 1) {
		fmt.Fprintln(os.Stderr, "ADDR (host:port) wanted")
		os.Exit(2)
	}
	addrs := fs.Args()
	switch mode {
	case "serve":
		serve(addrs[0])
	case "connect":
		for i := 0; i < *warm; i++ {
			for _, a := range addrs {
				connectOnce(a, *timeout, *rst)
			}
		}
		if len(addrs) == 1 {
			report(addrs[0], connectLoop(addrs[0], *n, *conc, *timeout, *rst))
			return
		}
		rs := connectAlternate(addrs, *n, *timeout, *rst)
		for i, a := range addrs {
			report(a, rs[i])
		}
	case "pingpong":
		rs := pingpong(addrs, *n, *warm, *timeout)
		for i, a := range addrs {
			report(a, rs[i])
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}

func serve(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serveOn(ln)
}

// serveOn answers every byte with itself until the client closes; returns when ln is closed.
func serveOn(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			b := make([]byte, 1)
			for {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}(c)
	}
}

type result struct {
	samples []time.Duration
	fails   int64
	wall    time.Duration
}

// connectOnce: dial, 1 byte there and back, close (the client closes first: a normal FIN, the
// client keeps TIME_WAIT unless rst).
func connectOnce(addr string, timeout time.Duration, rst bool) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok && rst {
		tc.SetLinger(0)
	}
	c.SetDeadline(time.Now().Add(timeout))
	b := []byte{'x'}
	if _, err := c.Write(b); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func connectLoop(addr string, n, conc int, timeout time.Duration, rst bool) result {
	var (
		mu    sync.Mutex
		all   = make([]time.Duration, 0, n)
		fails atomic.Int64
		next  atomic.Int64
		wg    sync.WaitGroup
		shown atomic.Int64
	)
	t0 := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, n/conc+1)
			for next.Add(1) <= int64(n) {
				d, err := connectOnce(addr, timeout, rst)
				if err != nil {
					fails.Add(1)
					if shown.Add(1) <= 5 {
						fmt.Fprintln(os.Stderr, "rtt:", err)
					}
					continue
				}
				local = append(local, d)
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return result{samples: all, fails: fails.Load(), wall: time.Since(t0)}
}

// connectAlternate: n connections to each address, one at a time, alternating between them.
func connectAlternate(addrs []string, n int, timeout time.Duration, rst bool) []result {
	rs := make([]result, len(addrs))
	walls := make([]time.Duration, len(addrs))
	for i := 0; i < n; i++ {
		for j, a := range addrs {
			t0 := time.Now()
			d, err := connectOnce(a, timeout, rst)
			walls[j] += time.Since(t0)
			if err != nil {
				if rs[j].fails++; rs[j].fails <= 5 {
					fmt.Fprintln(os.Stderr, "rtt:", a, err)
				}
				continue
			}
			rs[j].samples = append(rs[j].samples, d)
		}
	}
	for j := range rs {
		rs[j].wall = walls[j]
	}
	return rs
}

// pingpong: one connection per address, n 1-byte round trips on each, alternating.
func pingpong(addrs []string, n, warm int, timeout time.Duration) []result {
	rs := make([]result, len(addrs))
	conns := make([]net.Conn, len(addrs))
	for j, a := range addrs {
		c, err := net.DialTimeout("tcp", a, timeout)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rtt:", a, err)
			for k := range rs {
				rs[k].fails = int64(n)
			}
			return rs
		}
		defer c.Close()
		c.(*net.TCPConn).SetNoDelay(true)
		conns[j] = c
	}
	b := []byte{'x'}
	broken := make([]bool, len(addrs))
	for i := 0; i < warm+n; i++ {
		for j, c := range conns {
			if broken[j] {
				continue
			}
			s := time.Now()
			c.SetDeadline(s.Add(timeout))
			_, err := c.Write(b)
			if err == nil {
				_, err = io.ReadFull(c, b)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "rtt:", addrs[j], err)
				rs[j].fails += int64(warm + n - i)
				broken[j] = true
				continue
			}
			d := time.Since(s)
			rs[j].wall += d
			if i >= warm {
				rs[j].samples = append(rs[j].samples, d)
			}
		}
	}
	return rs
}

func report(addr string, r result) {
	fmt.Println(summary(addr, r))
}

// summary: the one-line report of an address (the benches parse its key=value fields).
func summary(addr string, r result) string {
	s := append([]time.Duration(nil), r.samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		return float64(s[int(p*float64(len(s)-1))].Nanoseconds()) / 1000
	}
	return fmt.Sprintf("addr=%s n=%d ok=%d fail=%d min_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f wall_ms=%d",
		addr, int64(len(s))+r.fails, len(s), r.fails, q(0), q(0.5), q(0.9), q(0.99), q(1), r.wall.Milliseconds())
}
