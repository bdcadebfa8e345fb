package lastline

import (
	"strings"
	"testing"
)

func TestCopy(t *testing.T) {
	for _, tc := range []struct{ name, in, last string }{
		{"empty", "", ""},
		{"one line, no newline", "qemu: error", "qemu: error"},
		{"blank lines after the last", "a\n  b  \n\n   \n", "b"},
		{"CRLF", "first\r\nsecond\r\n", "second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Recorder
			var seen []string
			l.Copy(strings.NewReader(tc.in), func(s string) { seen = append(seen, s) }, nil)
			if l.Last() != tc.last {
				t.Errorf("Last = %q, want %q (lines %q)", l.Last(), tc.last, seen)
			}
		})
	}
	// A line over MaxLine: the lines before it are lines, the rest passes through.
	var l Recorder
	var rest strings.Builder
	var lines int
	long := strings.Repeat("x", MaxLine+10)
	l.Copy(strings.NewReader("before\n"+long+"\nafter\n"), func(string) { lines++ }, &rest)
	if l.Last() != "before" || lines != 1 || !strings.HasSuffix(rest.String(), "after\n") {
		t.Errorf("long line: last %q, %d lines, rest of %d bytes", l.Last(), lines, rest.Len())
	}
}
