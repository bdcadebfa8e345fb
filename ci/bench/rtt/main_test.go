package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

func loopbackServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serveOn(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestConnectAndPingpongAlternate(t *testing.T) {
	a, b := loopbackServer(t), loopbackServer(t)
	for name, rs := range map[string][]result{
		"connect":  connectAlternate([]string{a, b}, 20, 5*time.Second, false),
		"pingpong": pingpong([]string{a, b}, 20, 2, 5*time.Second),
	} {
		if len(rs) != 2 {
			t.Fatalf("%s: %d results, want 2", name, len(rs))
		}
		for i, r := range rs {
			if r.fails != 0 || len(r.samples) != 20 {
				t.Errorf("%s addr %d: %d samples, %d failures; want 20, 0", name, i, len(r.samples), r.fails)
			}
		}
	}
	if r := connectLoop(a, 30, 3, 5*time.Second, true); r.fails != 0 || len(r.samples) != 30 {
		t.Errorf("connectLoop: %d samples, %d failures; want 30, 0", len(r.samples), r.fails)
	}
}

func TestFailuresAreCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there any more: every dial is refused
	r := connectLoop(dead, 5, 1, time.Second, false)
	if r.fails != 5 || len(r.samples) != 0 {
		t.Errorf("refused dials: %d samples, %d failures; want 0, 5", len(r.samples), r.fails)
	}
	if got := summary(dead, r); !strings.Contains(got, " n=5 ok=0 fail=5 ") {
		t.Errorf("summary %q does not report the failures", got)
	}
}

func TestSummaryQuantiles(t *testing.T) {
	var r result
	for i := 100; i >= 1; i-- { // unsorted on purpose
		r.samples = append(r.samples, time.Duration(i)*time.Microsecond)
	}
	got := summary("x:1", r)
	for _, want := range []string{"addr=x:1 ", " n=100 ok=100 fail=0 ", " min_us=1.0 ", " p50_us=50.0 ", " p99_us=99.0 ", " max_us=100.0 "} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
}
