// Package netns opens TCP connections from another network namespace (the
// cluster's node, a local pod's), as `nsenter --net=PATH curl` would, without
// a process of its own: the socket is made on an OS thread that has entered
// the namespace, and a socket stays in the namespace it was made in.
package netns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer dials from the network namespace at Path (e.g. /var/run/netns/berth-node);
// an empty Path dials from this process's own namespace.
type Dialer struct {
	Path string
}

// DialContext connects to address (tcp) from the namespace.
func (d Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.Path == "" {
		var nd net.Dialer
		return nd.DialContext(ctx, network, address)
	}
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := d.dialInside(ctx, network, address)
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

// dialInside runs on a goroutine of its own, locked to its thread: the thread
// enters the namespace, dials (the socket is made there), and goes back; a
// thread that could not go back is never unlocked, so Go ends it.
func (d Dialer) dialInside(ctx context.Context, network, address string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("this thread's network namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(d.Path)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("network namespace %s: %w", d.Path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace %s: %w", d.Path, err)
	}
	var nd net.Dialer
	c, dialErr := nd.DialContext(ctx, network, address)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leave network namespace %s: %w", d.Path, err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	if dialErr != nil {
		return nil, fmt.Errorf("from %s: %w", d.Path, dialErr)
	}
	return c, nil
}

// HTTPClient is an HTTP client whose connections start in the namespace
// (no keep-alive: each request dials anew), each request bounded by timeout.
func (d Dialer) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, Proxy: nil},
	}
}
