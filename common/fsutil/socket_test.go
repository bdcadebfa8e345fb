package fsutil

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDialSocket: a socket is connected to; a symlink to that same socket,
// a FIFO, a directory, a regular file and nothing at all are refused, and a
// refusal of what is there is an ErrNotOwnFile.
func TestDialSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := DialSocket(ctx, sock)
	if err != nil {
		t.Fatalf("DialSocket(socket): %v", err)
	}
	c.Close()
	<-accepted

	_, _, kinds := hostile(t)
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	kinds["a symlink to the socket"] = link
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kinds["a regular file"] = file
	for kind, path := range kinds {
		_, err := DialSocket(ctx, path)
		if err == nil {
			t.Errorf("%s: connected, want a refusal", kind)
			continue
		}
		if !errors.Is(err, ErrNotOwnFile) {
			t.Errorf("%s: %v, want an ErrNotOwnFile", kind, err)
		}
	}
	select {
	case <-accepted:
		t.Error("a connection went through a refused path")
	default:
	}
	if _, err := DialSocket(ctx, filepath.Join(dir, "absent.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent socket: %v, want ErrNotExist", err)
	}
}
