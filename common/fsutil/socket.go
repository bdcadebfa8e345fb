package fsutil

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/sys/unix"
)

// DialSocket connects to the unix socket at path without following a
// symlink there: the run volume is shared, and a planted link (to another
// socket, to a file) must not be connected through. The check is on a
// descriptor (O_PATH|O_NOFOLLOW) and the connection goes through that very
// descriptor (/proc/self/fd/N), so nothing swapped in between is followed
// either. Anything but a socket at path is a *NotOwnFileError (wrapping
// ErrNotOwnFile); ctx bounds the connect.
func DialSocket(ctx context.Context, path string) (net.Conn, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("connect to %s: %w", path, &NotOwnFileError{Path: path, Found: Describe(StatMode(&st)) + " where a socket was expected"})
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	return conn, nil
}
