package node

import (
	"fmt"
	"os"
	"strings"
)

// Status is /proc/PID/status as the kernel reports it: field name (Uid,
// CapEff, NoNewPrivs, Seccomp ...) to its value, runs of blanks made one space.
type Status map[string]string

// ProcStatus reads /proc/PID/status.
func ProcStatus(pid int) (Status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("status of pid %d: %w", pid, err)
	}
	return ParseStatus(string(b)), nil
}

// ParseStatus parses the text of a /proc/PID/status file.
func ParseStatus(text string) Status {
	s := Status{}
	for _, line := range strings.Split(text, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok {
			s[name] = strings.Join(strings.Fields(value), " ")
		}
	}
	return s
}
