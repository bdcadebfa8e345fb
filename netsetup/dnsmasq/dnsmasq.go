// Package dnsmasq renders the DHCP-only dnsmasq configuration for the VM.
// Every value comes from a validated plan; Render additionally refuses any
// value that could end a line or start a new option, so no input can add a line.
package dnsmasq

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/plan"
)

// ConfName and LeasesName are the files in the run directory (docs/design.md).
const (
	ConfName   = stage.DnsmasqConfName
	LeasesName = stage.DnsmasqLeasesName
)

// LeaseTime of the VM's one address. The address never changes, so a long
// lease costs nothing; the guest still renews it at half-time.
const LeaseTime = "12h"

// Render returns dnsmasq.conf for the plan, with the lease file in runDir.
func Render(p plan.Plan, runDir string) ([]byte, error) {
	if err := checkValues(p, runDir); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format+"\n", args...)
	}
	line("# Written by net-setup for the dnsmasq sidecar: DHCP for the VM on %s only, no DNS.", p.Bridge)
	line("# The VM gets %s, router %s, the pod's nameservers and search domains, MTU %d.", p.VMIP, p.VMGW, p.MTU)
	line("port=0")                 // no DNS server at all: the VM uses the pod's nameservers directly
	line("interface=%s", p.Bridge) // DHCP on the bridge only, never on the pod interface
	line("bind-interfaces")
	line("no-resolv")
	line("no-hosts")
	line("pid-file=") // no pid file: the sidecar runs in the foreground, its root may be read-only
	line("dhcp-authoritative")
	line("no-ping") // the range holds one address, the VM's: no need to probe it
	line("log-dhcp")
	line("dhcp-leasefile=%s", filepath.Join(runDir, LeasesName))
	line("dhcp-range=%s,%s,%s,%s", p.VMIP, p.VMIP, maskOf(p.Subnet.Bits()), LeaseTime)
	line("dhcp-option=option:router,%s", p.VMGW)
	if len(p.Nameservers) > 0 {
		ns := make([]string, len(p.Nameservers))
		for i, a := range p.Nameservers {
			ns[i] = a.String()
		}
		line("dhcp-option=option:dns-server,%s", strings.Join(ns, ","))
	} else {
		line("# the pod's resolv.conf has no IPv4 nameserver: the VM gets none")
	}
	if len(p.Search) > 0 {
		line("dhcp-option=option:domain-name,%s", p.Search[0])
		line("dhcp-option=option:domain-search,%s", strings.Join(p.Search, ","))
	}
	line("dhcp-option=option:mtu,%d", p.MTU)
	return b.Bytes(), nil
}

// checkValues is the renderer's own guard: whatever the plan says, nothing
// written may contain a byte that ends a line, starts a comment or separates
// options. The plan's validation already refuses these; this keeps it so.
func checkValues(p plan.Plan, runDir string) error {
	vals := append([]string{p.Bridge, runDir}, p.Search...)
	for _, v := range vals {
		if strings.ContainsAny(v, "\n\r\x00#,=") || strings.TrimSpace(v) != v || v == "" {
			return fmt.Errorf("render dnsmasq.conf: refusing unsafe value %q", v)
		}
	}
	return nil
}

func maskOf(bits int) string {
	m := uint32(0xffffffff) << (32 - bits)
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}
