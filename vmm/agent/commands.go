package agent

import (
	"context"
	"fmt"
	"strings"
)

// Ping: the agent answers guest-ping.
func (c *Client) Ping(ctx context.Context) error { return c.Execute(ctx, "guest-ping", nil, nil) }

// OSInfo is guest-get-osinfo's answer (the fields Berth shows; the agent may
// leave any of them out).
type OSInfo struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	PrettyName    string `json:"pretty-name"`
	Version       string `json:"version"`
	VersionID     string `json:"version-id"`
	KernelRelease string `json:"kernel-release"`
	KernelVersion string `json:"kernel-version"`
	Machine       string `json:"machine"`
}

// String is one line for people: the pretty name, the kernel, the machine.
func (o OSInfo) String() string {
	name := o.PrettyName
	if name == "" {
		name = strings.TrimSpace(o.Name + " " + o.Version)
	}
	if name == "" {
		name = "unknown OS"
	}
	s := name
	if o.KernelRelease != "" {
		s += ", kernel " + o.KernelRelease
	}
	if o.Machine != "" {
		s += ", " + o.Machine
	}
	return s
}

// OSInfo asks guest-get-osinfo.
func (c *Client) OSInfo(ctx context.Context) (OSInfo, error) {
	var o OSInfo
	err := c.Execute(ctx, "guest-get-osinfo", nil, &o)
	return o, err
}

// Interface is one of guest-network-get-interfaces' interfaces.
type Interface struct {
	Name            string    `json:"name"`
	HardwareAddress string    `json:"hardware-address"`
	IPAddresses     []Address `json:"ip-addresses"`
}

// Address is one address of an interface.
type Address struct {
	Type    string `json:"ip-address-type"` // ipv4 or ipv6
	Address string `json:"ip-address"`
	Prefix  int    `json:"prefix"`
}

// String is address/prefix.
func (a Address) String() string { return fmt.Sprintf("%s/%d", a.Address, a.Prefix) }

// Interfaces asks guest-network-get-interfaces.
func (c *Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var l []Interface
	err := c.Execute(ctx, "guest-network-get-interfaces", nil, &l)
	return l, err
}

// Addresses lists every interface's addresses but the loopback's, as
// name=address/prefix: what a log line shows of the guest's network.
func Addresses(ifs []Interface) []string {
	var out []string
	for _, i := range ifs {
		if i.Name == "lo" {
			continue
		}
		for _, a := range i.IPAddresses {
			out = append(out, i.Name+"="+a.String())
		}
	}
	return out
}

// Freeze asks guest-fsfreeze-freeze: the guest's file systems are synced and
// frozen (writes block) until Thaw; it returns how many were frozen.
func (c *Client) Freeze(ctx context.Context) (int, error) {
	var n int
	err := c.Execute(ctx, "guest-fsfreeze-freeze", nil, &n)
	return n, err
}

// Thaw asks guest-fsfreeze-thaw; it returns how many file systems were thawed.
func (c *Client) Thaw(ctx context.Context) (int, error) {
	var n int
	err := c.Execute(ctx, "guest-fsfreeze-thaw", nil, &n)
	return n, err
}

// Freeze states (guest-fsfreeze-status).
const (
	Thawed = "thawed"
	Frozen = "frozen"
)

// FreezeStatus asks guest-fsfreeze-status: Thawed or Frozen.
func (c *Client) FreezeStatus(ctx context.Context) (string, error) {
	var s string
	err := c.Execute(ctx, "guest-fsfreeze-status", nil, &s)
	return s, err
}
