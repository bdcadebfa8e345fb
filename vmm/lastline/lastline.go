// Package lastline copies a child process's output line by line and keeps
// its last non-empty line: what vmm reports when the child (QEMU, swtpm)
// ends in an error.
package lastline

import (
	"bufio"
	"io"
	"strings"
	"sync"
)

// MaxLine is the longest line read as a line (1 MiB); see Copy.
const MaxLine = 1 << 20

// Recorder keeps the last non-empty line Copy saw. Safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	line string
}

// Copy reads r to its end, hands each line (without its newline) to each and
// remembers the last one that is not blank, trimmed. After a line longer than
// MaxLine the rest of r is copied to rest as it is (dropped if rest is nil).
func (l *Recorder) Copy(r io.Reader, each func(line string), rest io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	for sc.Scan() {
		line := sc.Text()
		each(line)
		if t := strings.TrimSpace(line); t != "" {
			l.mu.Lock()
			l.line = t
			l.mu.Unlock()
		}
	}
	if rest == nil {
		rest = io.Discard
	}
	_, _ = io.Copy(rest, r)
}

// Last is the last non-blank line so far, trimmed ("" if none).
func (l *Recorder) Last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.line
}
