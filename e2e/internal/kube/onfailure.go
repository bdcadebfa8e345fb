package kube

import (
	"context"
	"strings"
	"testing"
	"time"
)

// DiagnoseOnFailure logs Diagnose's report of namespace ns when t has failed
// by the time it ends (container states, termination messages, log tails,
// events), bounded by a minute.
func (c *Cluster) DiagnoseOnFailure(t testing.TB, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var b strings.Builder
		c.Diagnose(ctx, ns, &b)
		t.Logf("diagnostics:\n%s", b.String())
	})
}
