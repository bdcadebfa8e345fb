package hostile

import (
	"path/filepath"

	"github.com/berth-vm/berth/common/stage"
)

// VolumeFile is a file a stage reads or writes in the run, image or disk
// volume, relative to the sandbox (run/, images/, disk/), named from
// common/stage/layout.go and the stages' docs (docs/design.md, "Volumes").
type VolumeFile struct {
	Stage string
	Rel   string
	Var   string // the variable naming its volume: a refusal names it
	// Replaced lists the plants the stage may rightly replace (exit 0, the
	// plant gone, what it pointed to untouched), with the reason.
	Replaced map[string]string
	// Idle lists the plants the stage may rightly leave alone (exit 0,
	// nothing changed) because in the sandbox's state it does not open the
	// file, with the reason.
	Idle map[string]string
}

// all plants, one reason.
func all(reason string) map[string]string {
	m := map[string]string{}
	for _, p := range Plants {
		m[p] = reason
	}
	return m
}

var (
	runDir = func(name string) string { return filepath.Join("run", name) }
	base   = "base.qcow2" // the base image's name in the sandbox (IMG_TARGET's default)
)

// VolumeFiles is the list the shared-volume sweep plants in.
var VolumeFiles = []VolumeFile{
	{Stage: "net-setup", Rel: runDir(stage.DnsmasqConfName), Var: "BERTH_RUN_DIR"},
	{Stage: "net-setup", Rel: runDir(stage.NetJSONName), Var: "BERTH_RUN_DIR"},
	{Stage: "net-setup", Rel: runDir(stage.TunNodeName), Var: "BERTH_RUN_DIR", Replaced: map[string]string{
		"symlink-pet-disk": "the tun node is made anew by every run (mknod, chown): a symlink in its place is removed, not followed",
		"symlink-canary":   "as above", "dangling-symlink": "as above", "fifo": "as above", "foreign-owner": "as above",
	}},
	{Stage: "image-fetch", Rel: "images/" + base, Var: "IMAGE_DIR"},
	{Stage: "image-fetch", Rel: "images/" + base + ".sha256", Var: "IMAGE_DIR", Replaced: map[string]string{
		"symlink-pet-disk": "a record that is not one is rewritten (temp file and rename): a symlink in its place is replaced, its target untouched",
		"symlink-canary":   "as above", "dangling-symlink": "as above",
	}},
	{Stage: "image-fetch", Rel: "images/." + base + ".part", Var: "IMAGE_DIR",
		Idle: all("read only while a download is under way: the sandbox's base is cached")},
	{Stage: "image-fetch", Rel: "images/." + base + ".lock", Var: "IMAGE_DIR", Idle: map[string]string{
		"foreign-owner": "lock files are shared by pods of any uid by design: opened read-only without following links, only flock'ed, never written",
	}},
	{Stage: "image-fetch", Rel: PetDisk, Var: "DISK_DIR"},
	{Stage: "image-fetch", Rel: "disk/pet.json", Var: "DISK_DIR"},
	{Stage: "image-fetch", Rel: "disk/.pet.lock", Var: "DISK_DIR", Idle: map[string]string{
		"foreign-owner": "lock files are shared by pods of any uid by design: opened read-only without following links, only flock'ed, never written",
	}},
	{Stage: "seed-iso", Rel: runDir(stage.SeedISOName), Var: "BERTH_RUN_DIR"},
	{Stage: "vmm", Rel: runDir(stage.SeedISOName), Var: "BERTH_RUN_DIR", Idle: map[string]string{
		"foreign-owner": vmmReadsOtherOwners,
	}},
	{Stage: "vmm", Rel: PetDisk, Var: "DISK_DIR", Idle: map[string]string{
		"foreign-owner": vmmReadsOtherOwners,
	}},
	{Stage: "vmm", Rel: "images/" + base, Var: "IMAGE_DIR", Idle: map[string]string{
		"foreign-owner": vmmReadsOtherOwners,
	}},
	{Stage: "vmm", Rel: runDir(stage.QMPSocketName), Var: "BERTH_RUN_DIR", Replaced: map[string]string{
		"symlink-pet-disk": "a stale socket is unlinked before QEMU listens: a symlink is removed, never followed",
		"symlink-canary":   "as above", "dangling-symlink": "as above", "fifo": "as above", "foreign-owner": "as above",
	}},
	{Stage: "vmm probe ready", Rel: runDir(stage.DnsmasqLeasesName), Var: "BERTH_RUN_DIR", Idle: map[string]string{
		"foreign-owner": "dnsmasq writes the leases as nobody: another owner is normal",
	}},
	{Stage: "vmm probe ready", Rel: runDir(VMStatusName), Var: "BERTH_RUN_DIR"},
	{Stage: "vmm probe live", Rel: runDir(stage.QMPSocketName), Var: "BERTH_RUN_DIR"},
}

// vmmReadsOtherOwners: vmm only reads the seed, the pet disk and the base
// and hands them to QEMU; their owner is image-fetch's and seed-iso's uid,
// which a root vmm (the kvm.privileged or tun.mode privileged opt-ins) is not.
// An unprivileged vmm cannot open another user's 0600 file: QEMU fails.
const vmmReadsOtherOwners = "vmm only reads it and hands it to QEMU; its owner is another stage's uid, which a root vmm (a privileged opt-in) legitimately is not"

// Plants are what the sweep puts in place of each VolumeFile.
var Plants = []string{"symlink-pet-disk", "symlink-canary", "dangling-symlink", "fifo", "directory", "foreign-owner"}

// ForeignUID owns the "foreign-owner" plant: neither root nor the VM's uid.
const ForeignUID = 4242
