package probe

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

// serve answers each connection to a local TCP port with what reply(n) says
// (n counts connections from 1) and closes it; it returns the address.
func serve(t *testing.T, reply func(n int) string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply(int(n.Add(1)))))
			c.Close()
		}
	}()
	return l.Addr().String()
}

// freeAddr is a local address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestBannerMain(t *testing.T) {
	ssh := serve(t, func(int) string { return "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n" })
	http := serve(t, func(int) string { return "HTTP/1.1 400 Bad Request\r\n\r\n" })
	silent := serve(t, func(int) string { return "" })
	closed := freeAddr(t)
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"ssh", []string{ssh}, 0, "answers: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\n", ""},
		{"another prefix", []string{"-prefix", "HTTP/", http}, 0, "answers: HTTP/1.1 400 Bad Request", ""},
		{"not ssh", []string{"-within", "1s", http}, 1, "", `the first line is "HTTP/1.1 400 Bad Request"`},
		{"nothing said", []string{"-within", "1s", silent}, 1, "", "reading the first line: EOF"},
		{"nothing listens", []string{"-within", "1s", closed}, 1, "", "connection refused"},
		{"service not there", []string{"$(VM_WEB_TEST_SERVICE_HOST):22"}, 1, "", "the Service it names did not exist"},
		{"help", []string{"-h"}, 0, "usage: vmm probe banner", ""},
		{"no address", nil, 2, "", "want exactly one HOST:PORT"},
		{"two addresses", []string{ssh, ssh}, 2, "", "want exactly one HOST:PORT"},
		{"no port", []string{"10.0.0.1"}, 2, "", "want HOST:PORT"},
		{"port 0", []string{"10.0.0.1:0"}, 2, "", "want HOST:PORT"},
		{"port too big", []string{"10.0.0.1:65536"}, 2, "", "want HOST:PORT"},
		{"no host", []string{":22"}, 2, "", "want HOST:PORT"},
		{"within 0", []string{"-within", "0s", ssh}, 2, "", "-within 0s"},
		{"within too long", []string{"-within", "2h", ssh}, 2, "", "-within 2h0m0s"},
		{"unknown flag", []string{"-timeout", "1s", ssh}, 2, "", "flag provided but not defined"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(append([]string{"banner"}, c.args...), stage.MapEnv(nil), &out, &errb)
			if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), c.code, c.out, c.err)
			}
		})
	}
}

// TestWaitBannerRetries: a service that answers from its third connection on
// (sshd still starting) is waited for.
func TestWaitBannerRetries(t *testing.T) {
	addr := serve(t, func(n int) string {
		if n < 3 {
			return ""
		}
		return "SSH-2.0-late\n"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	line, err := WaitBanner(ctx, addr, "SSH-", time.Second, 10*time.Millisecond)
	if err != nil || line != "SSH-2.0-late" {
		t.Errorf("WaitBanner: %q, %v; want SSH-2.0-late", line, err)
	}
}
