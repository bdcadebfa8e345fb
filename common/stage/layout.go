package stage

// The contract's defaults (docs/design.md, "Environment"): the one place for a
// value that more than one stage reads, so the stages cannot disagree on it.
const (
	DefaultRunDir   = "/run/berth"            // BERTH_RUN_DIR: the run volume
	DefaultImageDir = "/var/lib/berth/images" // IMAGE_DIR: the base-image cache
	DefaultDiskDir  = "/var/lib/berth/disk"   // DISK_DIR: the VM's PVC, the pet overlay
	DefaultVMIP     = "192.168.254.2"         // VM_IP: the guest's address on the /30
	DefaultVMGW     = "192.168.254.1"         // VM_GW: the bridge's address, the guest's gateway
	DefaultBridge   = "br0"                   // BRIDGE
	DefaultTap      = "tap0"                  // TAP
)

// The files in the run volume ($BERTH_RUN_DIR) that pass between the stages
// (docs/design.md, "Volumes"): one name each, for the stage that writes the file
// and the ones that read it.
const (
	DnsmasqConfName   = "dnsmasq.conf"   // net-setup writes, the dnsmasq sidecar reads
	DnsmasqLeasesName = "dnsmasq.leases" // dnsmasq writes, `vmm probe ready` reads
	NetJSONName       = "net.json"       // net-setup's plan as applied
	TunNodeName       = "tun"            // net-setup makes it, vmm opens it when /dev/net/tun is absent
	SeedISOName       = "seed.iso"       // seed-iso writes, vmm attaches
	QMPSocketName     = "qmp.sock"       // vmm's QEMU serves it, `vmm probe live` asks it
	AgentSocketName   = "qga.sock"       // vmm's QEMU serves it (the guest agent's channel), `vmm agent` and `vmm probe ready` ask it
)

// Links net-setup makes carry one of these as their ifalias (IFLA_IFALIAS):
// net-setup changes or deletes only a link that carries it, and vmm attaches
// only to a tap that does. A link of the same name without it (the pod's own
// NIC, a Multus NIC, anything else) is refused, never touched.
const (
	BridgeAlias = "berth: bridge made by net-setup"
	TapAlias    = "berth: tap made by net-setup"
)
