// Package roottest gates tests that need root (network namespaces, iptables,
// mknod, loop devices). Outside CI they skip when not root; with
// BERTH_REQUIRE_ROOT=1 (set by `make test`) they fail instead, so a CI run can
// never pass by skipping the data-path tests.
package roottest

import (
	"os"
	"testing"
)

// Require stops the test unless it runs as root.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_REQUIRE_ROOT") == "1" {
		t.Fatal("this test needs root, and BERTH_REQUIRE_ROOT=1 forbids skipping it")
	}
	t.Skip("needs root (set BERTH_REQUIRE_ROOT=1 to make this a failure)")
}
