// Command rtt measures TCP connect + 1-byte round trips for the NAT and conntrack benchmarks
// (ci/bench/nat.sh, ci/bench/conntrack.sh). Not part of Berth; a bench tool with its own module.
//
//	rtt serve ADDR                      accept; per connection: read 1 byte, write it back, close
//	rtt connect [flags] ADDR            N times: dial, write 1 byte, read 1 byte, close
//	rtt pingpong [flags] ADDR           one connection, N 1-byte round trips
//
// connect and pingpong print one line: "n=N ok=K fail=F min_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. wall_ms=.."
// and the first errors on stderr. Every dial and read has a deadline (-timeout).
package main

import (
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
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "one ADDR (host:port) wanted")
		os.Exit(2)
	}
	addr := fs.Arg(0)
	switch mode {
	case "serve":
		serve(addr)
	case "connect":
		for i := 0; i < *warm; i++ {
			connectOnce(addr, *timeout, *rst)
		}
		report(connectLoop(addr, *n, *conc, *timeout, *rst))
	case "pingpong":
		report(pingpong(addr, *n, *warm, *timeout))
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
	for {
		c, err := ln.Accept()
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

func pingpong(addr string, n, warm int, timeout time.Duration) result {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rtt:", err)
		return result{fails: int64(n), wall: time.Since(t0)}
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	b := []byte{'x'}
	var r result
	for i := 0; i < warm+n; i++ {
		s := time.Now()
		c.SetDeadline(s.Add(timeout))
		if _, err := c.Write(b); err != nil {
			fmt.Fprintln(os.Stderr, "rtt:", err)
			r.fails += int64(warm + n - i)
			break
		}
		if _, err := io.ReadFull(c, b); err != nil {
			fmt.Fprintln(os.Stderr, "rtt:", err)
			r.fails += int64(warm + n - i)
			break
		}
		if i >= warm {
			r.samples = append(r.samples, time.Since(s))
		}
	}
	r.wall = time.Since(t0)
	return r
}

func report(r result) {
	s := r.samples
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		return float64(s[int(p*float64(len(s)-1))].Nanoseconds()) / 1000
	}
	fmt.Printf("n=%d ok=%d fail=%d min_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f wall_ms=%d\n",
		int64(len(s))+r.fails, len(s), r.fails, q(0), q(0.5), q(0.9), q(0.99), q(1), r.wall.Milliseconds())
}
