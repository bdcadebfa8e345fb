package guest

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// The same bytes as the shell's yes and head make (the guest's coreutils):
// sizes below, at and across PatternSHA256's buffer, and off a line's end.
func TestPatternSHA256(t *testing.T) {
	line := "berth-e2e-data-marker"
	for _, n := range []int64{0, 1, 22, 4096*22 - 1, 4096 * 22, 3<<20 + 7} {
		out, err := exec.Command("sh", "-c", fmt.Sprintf("yes %s | head -c %d | sha256sum", line, n)).Output()
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := strings.Cut(string(out), " ")
		if got := PatternSHA256(line, n); got != want {
			t.Errorf("PatternSHA256(%q, %d) = %s, sha256sum says %s", line, n, got, want)
		}
	}
}
