package charttest

import "testing"

// TestGuestAgentAndReadyWhen: guestAgent.enabled and readyWhen reach vmm as
// GUEST_AGENT and READY_WHEN (defaults true and lease), per VM; readyWhen tcp
// without readyTCPPort and agent without the guest agent are refused, named,
// as are values outside the schema's.
func TestGuestAgentAndReadyWhen(t *testing.T) {
	r := render(t, oneVM+`
    readyWhen: agent
  vm2:
    image:
      source: http://images.example/other.qcow2
    guestAgent: {enabled: false}
    readyWhen: tcp
`)
	for _, tc := range []struct{ vm, agent, when string }{
		{"vm1", "true", "agent"},
		{"vm2", "false", "tcp"},
	} {
		e := env(container(t, sts(t, r, tc.vm), "vm"))
		if e["GUEST_AGENT"] != tc.agent || e["READY_WHEN"] != tc.when {
			t.Errorf("%s: GUEST_AGENT=%q READY_WHEN=%q, want %q %q", tc.vm, e["GUEST_AGENT"], e["READY_WHEN"], tc.agent, tc.when)
		}
	}
	if e := env(container(t, sts(t, render(t, oneVM), "vm1"), "vm")); e["GUEST_AGENT"] != "true" || e["READY_WHEN"] != "lease" {
		t.Errorf("defaults: GUEST_AGENT=%q READY_WHEN=%q, want true lease", e["GUEST_AGENT"], e["READY_WHEN"])
	}
	c := load(t)
	for _, bad := range []struct{ values, msg string }{
		{"    readyWhen: tcp\n    readyTCPPort: 0\n", "vms.vm1.readyWhen tcp needs readyTCPPort"},
		{"    readyWhen: agent\n    guestAgent: {enabled: false}\n", "vms.vm1.readyWhen agent needs the guest agent"},
		{"    readyWhen: ssh\n", "readyWhen"},
		{"    readyWhen: Lease\n", "readyWhen"},
		{"    guestAgent: {enabled: \"yes\"}\n", "guestAgent"},
		{"    guestAgent: true\n", "guestAgent"},
		{"    guestAgent: {enable: true}\n", "guestAgent"},
	} {
		requireRefused(t, c, oneVM+bad.values, bad.msg)
	}
}
