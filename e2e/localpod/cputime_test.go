package localpod

import (
	"os"
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	for _, c := range []struct {
		name, line string
		want       time.Duration
		err        bool
	}{
		{"qemu", "29528 (qemu-system-x86) S 1 29528 1 0 -1 4194560 100 0 0 0 7250 2570 0 0 20 0 5 0 1 3417164 350583", 98200 * time.Millisecond, false},
		{"name with spaces and parens", "7 (a) b (c)) R 1 7 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1", 70 * time.Millisecond, false},
		{"no name", "7 R 1 7 1 0 -1 0 0 0 0 0 3 4", 0, true},
		{"short", "7 (x) R 1 7 1 0 -1 0 0 0 0 0 3", 0, true},
		{"not a number", "7 (x) R 1 7 1 0 -1 0 0 0 0 0 3 x 0 0", 0, true},
		{"negative", "7 (x) R 1 7 1 0 -1 0 0 0 0 0 -3 4 0 0", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := statCPU(c.line)
			if (err != nil) != c.err || got != c.want {
				t.Fatalf("statCPU = %v, %v; want %v, error %v", got, err, c.want, c.err)
			}
		})
	}
}

func TestCPUTimeOfThisProcessMoves(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("CPU time did not move after 300 ms of spinning: %v then %v", before, after)
	}
}
