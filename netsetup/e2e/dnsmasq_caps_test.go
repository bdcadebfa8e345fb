package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDnsmasqCapabilities (docs/security.md, the dnsmasq row): the real dnsmasq, started as root
// with only the capabilities the chart gives its container (the bounding set, as a container's
// drop ALL + add: NET_ADMIN, NET_BIND_SERVICE, SETUID, SETGID), serves the VM its lease on
// net-setup's config; without NET_ADMIN it refuses to start (why the sidecar needs it); with
// NET_RAW added (what the chart gave before) nothing changes: the config says no-ping.
func TestDnsmasqCapabilities(t *testing.T) {
	chart := []string{"net_admin", "net_bind_service", "setuid", "setgid"}
	without := func(c string) []string {
		var out []string
		for _, x := range chart {
			if x != c {
				out = append(out, x)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		caps  []string
		lease bool
	}{
		{"chart", chart, true},
		{"with-net-raw", append([]string{"net_raw"}, chart...), true},
		{"without-net-admin", without("net_admin"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, calico)
			e.mustNetSetup(nil)
			bounding := "-all,+" + strings.Join(tc.caps, ",+")
			args := []string{"setpriv", "--bounding-set=" + bounding, "--inh-caps=-all",
				"dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=" + filepath.Join(e.runDir, "dnsmasq.conf")}
			if !tc.lease {
				cmd := exec.Command("ip", append([]string{"netns", "exec", e.pod}, args...)...)
				done := make(chan error, 1)
				var out strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(strings.ToLower(out.String()), "capabilit") {
						t.Errorf("dnsmasq without NET_ADMIN: %v, %q; want a refusal naming the capabilities", err, out.String())
					}
				case <-time.After(20 * time.Second):
					cmd.Process.Kill()
					<-done
					t.Errorf("dnsmasq without NET_ADMIN kept running: the chart's NET_ADMIN would not be needed (%s)", out.String())
				}
				return
			}
			e.background(e.pod, args...)
			lease := e.attachVM()
			if lease["ip"] != vmIP {
				t.Errorf("lease %v, want %s", lease, vmIP)
			}
		})
	}
}
