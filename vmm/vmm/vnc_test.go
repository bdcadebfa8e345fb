package vmm

import (
	"crypto/des"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/roottest"
)

// TestBinaryVNCPassword: VNC_LISTEN=0.0.0.0 with VNC_PASSWORD_FILE → QEMU's VNC
// on every address of the pod asks for VNC authentication, and the password
// from the file (set by vmm over QMP) is accepted while a wrong one is not.
func TestBinaryVNCPassword(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	p := newPod(t)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
	os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
	pw := filepath.Join(p.run, "vnc-password")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	p.chown(t)
	sh(t, "ip", "-n", p.ns, "addr", "add", "10.99.0.1/32", "dev", "lo")
	env := p.env("ACCEL=tcg", "SHUTDOWN_TIMEOUT=2", "VNC_LISTEN=0.0.0.0", "VNC_PASSWORD_FILE="+pw)
	v := p.start(t, "vnc", env)
	until(t, 30*time.Second, "VNC password set", func() bool { return strings.Contains(readFile(v.stderr), "VNC password set") })

	for _, tc := range []struct {
		password string
		ok       bool
	}{{"wrong", false}, {"s3cret", true}} {
		err := inNetns(p.ns, func() error { return vncAuth("10.99.0.1:5900", tc.password) })
		if (err == nil) != tc.ok {
			t.Errorf("VNC auth with %q: err = %v, want ok=%v", tc.password, err, tc.ok)
		}
	}
	// --check with the same environment: VNC on every address, with a password, as planned.
	if code, stdout, stderr := p.check(t, env); code != 0 {
		t.Errorf("--check: exit %d, stdout %q, stderr %q; want the match", code, stdout, stderr)
	}
	v.cmd.Process.Signal(unix.SIGTERM)
	v.exit(t, 30*time.Second)
}

// inNetns runs f on a thread inside the named network namespace.
func inNetns(ns string, f func() error) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			res <- err
			return
		}
		res <- f()
	}()
	return <-res
}

// vncAuth does the RFB 3.8 handshake with VNC authentication (type 2).
func vncAuth(addr, password string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	ver := make([]byte, 12)
	if _, err := io.ReadFull(c, ver); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	c.Write([]byte("RFB 003.008\n"))
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil || n[0] == 0 {
		return fmt.Errorf("security types: %v (count %d)", err, n[0])
	}
	types := make([]byte, n[0])
	io.ReadFull(c, types)
	if !strings.Contains(string(types), "\x02") {
		return fmt.Errorf("server offers security types %v, not VNC authentication", types)
	}
	c.Write([]byte{2})
	challenge := make([]byte, 16)
	if _, err := io.ReadFull(c, challenge); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	key := make([]byte, 8)
	copy(key, password)
	for i, b := range key { // VNC's DES key: each byte's bits reversed
		var r byte
		for j := 0; j < 8; j++ {
			r |= (b >> j & 1) << (7 - j)
		}
		key[i] = r
	}
	block, _ := des.NewCipher(key)
	resp := make([]byte, 16)
	block.Encrypt(resp[:8], challenge[:8])
	block.Encrypt(resp[8:], challenge[8:])
	c.Write(resp)
	var result [4]byte
	if _, err := io.ReadFull(c, result[:]); err != nil {
		return fmt.Errorf("security result: %w", err)
	}
	if binary.BigEndian.Uint32(result[:]) != 0 {
		return fmt.Errorf("authentication failed")
	}
	return nil
}
