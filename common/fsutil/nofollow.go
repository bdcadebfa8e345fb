package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Shared volumes (the image cache on the node, the pet disk's PVC, the run
// volume) are hostile ground: anything that can write there can leave a
// symlink, a FIFO or a directory where a stage expects a file of its own. The
// functions here never follow a symlink in the last component of a path, never
// block on a FIFO, and refuse whatever is not a regular file. Every file a stage
// creates, opens for writing, locks, chmods or renames in a shared volume goes
// through them (or through WriteFileAtomic, which uses them).

// ErrNotOwnFile is wrapped by every refusal: the path holds a symlink, a FIFO,
// a device, a socket or a directory where a regular file was expected. It is
// left as it is.
var ErrNotOwnFile = errors.New("not a regular file of Berth's")

// NotOwnFileError says what was found at Path instead of a regular file.
type NotOwnFileError struct {
	Path  string
	Found string // "a symlink", "a FIFO", "a directory", ...
}

func (e *NotOwnFileError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file of this stage's own: refusing to use it (left as it is; remove it if it is not yours)", e.Path, e.Found)
}

func (e *NotOwnFileError) Unwrap() error { return ErrNotOwnFile }

// Describe names a file's type for an error message: "a symlink", "a FIFO",
// "a socket", "a device", "a directory", "a regular file". The one wording of
// every stage.
func Describe(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	default:
		return "not a regular file (" + m.Type().String() + ")"
	}
}

// StatMode is the file type of a stat(2) result as an fs.FileMode, for
// Describe.
func StatMode(st *unix.Stat_t) fs.FileMode {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFREG:
		return 0
	}
	return fs.ModeIrregular
}

// OpenFile is os.OpenFile that does not follow a symlink at path, does not
// block on a FIFO, and returns a *NotOwnFileError unless path is (or, with
// O_CREATE, becomes) a regular file. The type is checked on the opened
// descriptor, so a file swapped between a check and the open is caught.
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, perm)
	if err != nil {
		// ELOOP: the last component is a symlink. EISDIR/ENXIO/EWOULDBLOCK:
		// a directory opened for writing, a FIFO with no reader, a socket.
		var pe *fs.PathError
		if errors.As(err, &pe) && (errors.Is(pe.Err, syscall.ELOOP) || errors.Is(pe.Err, syscall.EISDIR) ||
			errors.Is(pe.Err, syscall.ENXIO) || errors.Is(pe.Err, syscall.EWOULDBLOCK)) {
			if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() {
				return nil, &NotOwnFileError{Path: path, Found: Describe(fi.Mode())}
			}
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotOwnFileError{Path: path, Found: Describe(fi.Mode())}
	}
	// O_NONBLOCK is only there for the open; a regular file ignores it, but
	// clear it so the descriptor behaves like any other.
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// Open opens path read-only with OpenFile's guarantees.
func Open(path string) (*os.File, error) { return OpenFile(path, os.O_RDONLY, 0) }

// CheckOwnFile returns nil when nothing is at path or path is a regular file
// (not a symlink), and a *NotOwnFileError for anything else: the check before
// renaming onto path or trusting what is there.
func CheckOwnFile(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return &NotOwnFileError{Path: path, Found: Describe(fi.Mode())}
	}
	return nil
}

// Chmod changes a regular file's mode through a descriptor opened without
// following symlinks.
func Chmod(path string, mode os.FileMode) error {
	f, err := Open(path)
	if err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// CheckOwnFileOf is CheckOwnFile that also wants the file, when there is one,
// owned by uid: a file of another user where a stage keeps its own (planted
// by another container of the pod, or left by a release with another vmUID)
// is refused, not used or replaced.
func CheckOwnFileOf(path string, uid int) error {
	if err := CheckOwnFile(path); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return &NotOwnFileError{Path: path, Found: fmt.Sprintf("a file of uid %d (this stage runs as uid %d)", st.Uid, uid)}
	}
	return nil
}

// MaxRecord bounds ReadRecord: Berth's JSON records are a few hundred bytes.
const MaxRecord = 64 << 10

// ReadRecord reads one of Berth's small records in a shared volume with
// Open's guarantees (no symlink followed, no FIFO blocked on, a regular file
// only) and at most MaxRecord bytes: a longer file is an error, not a record.
func ReadRecord(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxRecord+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxRecord {
		return nil, fmt.Errorf("%s is over %d bytes: not a record of Berth's", path, MaxRecord)
	}
	return b, nil
}
