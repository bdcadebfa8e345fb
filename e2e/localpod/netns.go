package localpod

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread that is in the network namespace ns, then puts
// the thread back. A socket belongs to the namespace it was made in, so a
// connection f opens stays in ns after f returns.
func inNetns(ns string, f func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so Go ends it with this goroutine instead of reusing it in ns.
		panic(fmt.Sprintf("setns back from %s: %v", ns, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Answer is what the endpoint proto:addr:port answers from the namespace ns:
// for TCP the first bytes it sends after the connect, for UDP its reply to
// "ping"; trimmed. No answer is "" and the error says why.
func Answer(ns, proto, addr string, port int) (string, error) {
	var conn net.Conn
	target := net.JoinHostPort(addr, fmt.Sprint(port))
	if err := inNetns(ns, func() (err error) {
		conn, err = net.DialTimeout(proto, target, 3*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if proto == "udp" {
		if _, err := conn.Write([]byte("ping")); err != nil {
			return "", err
		}
	}
	b := make([]byte, 100)
	n, err := conn.Read(b)
	if n == 0 {
		return "", fmt.Errorf("%s %s from netns %s: no answer: %v", proto, target, ns, err)
	}
	return strings.TrimSpace(string(b[:n])), nil
}
