// Package rules renders Berth's iptables rule set from a plan: the VM takes
// over the pod's IP (DNAT in, SNAT out), forwarding is accepted and TCP MSS is
// clamped to the path MTU. Every rule lives in chains of Berth's own, which are
// flushed and refilled as one iptables-restore transaction per table; the
// built-in chains only get one jump each, added once.
package rules

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/berth-vm/berth/netsetup/plan"
)

// Chain is one of Berth's chains and the built-in chain that jumps to it.
type Chain struct {
	Table string
	Name  string     // Berth's chain
	From  string     // built-in chain holding the jump
	Rules [][]string // rule specs, in iptables -S's canonical order
}

// Jump is the rule spec placed in the built-in chain.
func (c Chain) Jump() []string {
	return []string{"-m", "comment", "--comment", "berth", "-j", c.Name}
}

// Set is the whole rule set, in the order it is applied.
type Set []Chain

// Chain names. Short enough for iptables' 28-byte limit.
const (
	ChainPrerouting  = "BERTH-PREROUTING"
	ChainPostrouting = "BERTH-POSTROUTING"
	ChainForward     = "BERTH-FORWARD"
	ChainMSS         = "BERTH-MSS"
	ChainInput       = "BERTH-INPUT"
)

// Build returns the rule set for the plan.
func Build(p plan.Plan) Set {
	pod := p.PodIP.String() + "/32"
	vm := p.VMIP.String() + "/32"
	vnc := strconv.Itoa(plan.VNCPort)

	var pre [][]string
	for _, in := range []string{p.PodIface, p.Bridge} {
		// From the pod interface: the world reaching the pod IP. From the
		// bridge: the VM reaching its own pod IP (hairpin).
		if !p.NoVNC {
			pre = append(pre, []string{"-d", pod, "-i", in, "-p", "tcp", "-m", "tcp", "--dport", vnc, "-j", "RETURN"})
		}
		// vmm's metrics port stays in the pod as VNC's does (METRICS_PORT).
		if p.MetricsPort != 0 {
			pre = append(pre, []string{"-d", pod, "-i", in, "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(p.MetricsPort), "-j", "RETURN"})
		}
		pre = append(pre, []string{"-d", pod, "-i", in, "-j", "DNAT", "--to-destination", p.VMIP.String()})
	}
	post := [][]string{
		// The VM's traffic leaves with the pod IP.
		{"-s", vm, "-o", p.PodIface, "-j", "SNAT", "--to-source", p.PodIP.String()},
		// Hairpin: the VM reaching its pod IP comes back from the pod IP, so
		// its replies return through the NAT.
		{"-s", vm, "-d", vm, "-o", p.Bridge, "-j", "SNAT", "--to-source", p.PodIP.String()},
	}
	fwd := [][]string{
		{"-s", vm, "-i", p.Bridge, "-j", "ACCEPT"},
		{"-d", vm, "-o", p.Bridge, "-j", "ACCEPT"},
	}
	// From the VM to the pod itself (not through it): DHCP to dnsmasq, ICMP (path MTU, ping of
	// the gateway) and TCP that is not a new connection (replies to the pod's own connections,
	// such as vmm's readiness probe of the guest's port) are let through; everything else is
	// dropped, so the guest reaches no service of the pod — whatever address a sidecar binds
	// (docs/security.md). xt_tcp's SYN test rather than conntrack's state: no module beyond the
	// ones the DNAT rules already use.
	in := [][]string{
		{"-i", p.Bridge, "-p", "udp", "-m", "udp", "--dport", "67", "-j", "RETURN"},
		{"-i", p.Bridge, "-p", "icmp", "-j", "RETURN"},
		{"-i", p.Bridge, "-p", "tcp", "-m", "tcp", "!", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN", "-j", "RETURN"},
		{"-i", p.Bridge, "-j", "DROP"},
	}
	mss := [][]string{
		{"-i", p.Bridge, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"},
		{"-o", p.Bridge, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"},
	}
	return Set{
		{Table: "nat", Name: ChainPrerouting, From: "PREROUTING", Rules: pre},
		{Table: "nat", Name: ChainPostrouting, From: "POSTROUTING", Rules: post},
		{Table: "filter", Name: ChainForward, From: "FORWARD", Rules: fwd},
		{Table: "filter", Name: ChainInput, From: "INPUT", Rules: in},
		{Table: "mangle", Name: ChainMSS, From: "FORWARD", Rules: mss},
	}
}

// Tables returns the table names in the order they appear.
func (s Set) Tables() []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range s {
		if !seen[c.Table] {
			seen[c.Table] = true
			out = append(out, c.Table)
		}
	}
	return out
}

// Restore renders the iptables-restore --noflush input that (re)creates and
// refills Berth's chains of one table atomically. Declaring a chain with
// ":NAME - [0:0]" under --noflush creates it or flushes it.
func (s Set) Restore(table string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%s\n", table)
	for _, c := range s {
		if c.Table == table {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
		}
	}
	for _, c := range s {
		if c.Table != table {
			continue
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "-A %s %s\n", c.Name, join(r))
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// Lines renders the rule set as iptables -S would list it: the jump in the
// built-in chain, then Berth's chain. This is net.json's "rules" and the
// golden file.
func (s Set) Lines() []string {
	var out []string
	for _, c := range s {
		out = append(out, fmt.Sprintf("-t %s -A %s %s", c.Table, c.From, join(c.Jump())))
		out = append(out, fmt.Sprintf("-t %s -N %s", c.Table, c.Name))
		for _, r := range c.Rules {
			out = append(out, fmt.Sprintf("-t %s -A %s %s", c.Table, c.Name, join(r)))
		}
	}
	return out
}

func join(args []string) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || bytes.ContainsAny([]byte(a), " \t\"") {
			b.WriteString(strconv.Quote(a))
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
