package stage

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
)

// Links net-setup makes carry one of these as their ifalias (IFLA_IFALIAS):
// net-setup changes or deletes only a link that carries it, and vmm attaches
// only to a tap that does. A link of the same name without it (the pod's own
// NIC, a Multus NIC, anything else) is refused, never touched.
const (
	BridgeAlias = "berth: bridge made by net-setup"
	TapAlias    = "berth: tap made by net-setup"
)
