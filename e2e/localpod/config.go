// Package localpod runs the whole Berth pod without Kubernetes: the same
// binaries (bin/), the same environment and the same order as the pod's
// containers, in network namespaces, with a real guest (ci/testguest). The
// node and the Calico-shaped pod namespace are common/roottest's fixture.
// Its test (build tag e2e, `make test-local`) asserts what the pod promises;
// cmd/local-pod brings a pod up for a person or a bench and takes it down
// (ci/local-pod.sh, `make demo-local`). docs/local-pod.md.
package localpod

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

// The pod's resolv.conf (what the kubelet writes for a pod in namespace
// berth-test): the guest must get these nameservers and search domains.
var (
	Nameservers = []string{"10.96.0.10", "10.96.0.11"}
	Search      = []string{"berth-test.svc.cluster.local", "svc.cluster.local", "cluster.local"}
)

// PodMTU is the MTU of the pod's eth0 (common/roottest's Calico-shaped pod):
// the guest must get it.
const PodMTU = 1450

// The guest's side of the /30 (the contract's defaults, which net-setup uses
// when VM_IP and VM_GW are not set).
const (
	VMIP = stage.DefaultVMIP
	VMGW = stage.DefaultVMGW
)

// Config is what may differ between two local pods. FromEnv reads it.
type Config struct {
	Repo            string        // the repository: ci/testguest/build.sh is here
	Bin             string        // the stage binaries (BERTH_BIN, default Repo/bin)
	VMName          string        // VM_NAME (default berth-local)
	VMUID           int           // image-fetch, seed-iso and vmm run as this uid and gid (VM_UID, default 65534)
	VMCPUs          string        // VM_CPUS of the vm container (default 2)
	VMMemory        string        // VM_MEMORY of the vm container (default 1Gi)
	DiskSize        string        // DISK_SIZE of image-fetch (default 4Gi; empty: the image's own size)
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT of vmm (seconds, default 90)
	BootTimeout     time.Duration // how long the guest may take to answer SSH (BOOT_TIMEOUT, seconds, default 420)
	HTTPPort        int           // the node's image server (HTTP_PORT, default 8081)
	// HostKeyTypes are the SSH host keys the guest generates on first boot (SSH_HOST_KEY_TYPES,
	// cloud-init's ssh_genkeytypes; empty: the image's default, rsa, ecdsa and ed25519). The boot
	// bench sets ed25519 on both sides: RSA's random prime search is the noisiest part of a TCG boot.
	HostKeyTypes []string
}

// hostKeyTypes are the values SSH_HOST_KEY_TYPES allows (cloud-init's key types).
var hostKeyTypes = map[string]bool{"rsa": true, "ecdsa": true, "ed25519": true}

// FromEnv is the Config of repo, with the variables above where set. A bad
// value is an error naming the variable and what it allows.
func FromEnv(repo string) (Config, error) {
	c := Config{Repo: repo, Bin: repo + "/bin", VMName: "berth-local", VMUID: 65534, VMCPUs: "2", VMMemory: "1Gi",
		DiskSize: "4Gi", ShutdownTimeout: 90 * time.Second, BootTimeout: 420 * time.Second, HTTPPort: 8081}
	if v, ok := os.LookupEnv("BERTH_BIN"); ok {
		c.Bin = v
	}
	for name, dst := range map[string]*string{"VM_NAME": &c.VMName, "VM_CPUS": &c.VMCPUs, "VM_MEMORY": &c.VMMemory} {
		if v := os.Getenv(name); v != "" {
			*dst = v
		}
	}
	if v, ok := os.LookupEnv("DISK_SIZE"); ok {
		c.DiskSize = v
	}
	ints := []struct {
		name     string
		min, max int
		set      func(int)
	}{
		{"VM_UID", 1, 1<<31 - 1, func(n int) { c.VMUID = n }},
		{"SHUTDOWN_TIMEOUT", 1, 3600, func(n int) { c.ShutdownTimeout = time.Duration(n) * time.Second }},
		{"BOOT_TIMEOUT", 1, 7200, func(n int) { c.BootTimeout = time.Duration(n) * time.Second }},
		{"HTTP_PORT", 1, 65535, func(n int) { c.HTTPPort = n }},
	}
	for _, i := range ints {
		v := os.Getenv(i.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < i.min || n > i.max {
			return Config{}, fmt.Errorf("%s=%q: want a whole number from %d to %d", i.name, v, i.min, i.max)
		}
		i.set(n)
	}
	if v := os.Getenv("SSH_HOST_KEY_TYPES"); v != "" {
		for _, t := range strings.Split(v, ",") {
			if !hostKeyTypes[t] {
				return Config{}, fmt.Errorf("SSH_HOST_KEY_TYPES=%q: want a comma-separated list of rsa, ecdsa, ed25519", v)
			}
			c.HostKeyTypes = append(c.HostKeyTypes, t)
		}
	}
	return c, nil
}
