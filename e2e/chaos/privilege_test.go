//go:build e2e

package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/node"
)

// TestLeastPrivilege: the running VM of -good-pod as the kernel sees it
// (docs/security.md). Without -good-pod, TestBadInput checks the good VM it
// booted itself.
func TestLeastPrivilege(t *testing.T) {
	if cfg.goodPod == "" {
		t.Skip("no -good-pod: TestBadInput checks the good VM it boots")
	}
	ns, pod, ok := strings.Cut(cfg.goodPod, "/")
	if !ok {
		t.Fatalf("-good-pod %q: want NS/POD", cfg.goodPod)
	}
	k, err := kube.Connect(cfg.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	b := newBadInput(t)
	b.result(t, "least privilege, live", leastPrivilege(t, k, ns, pod))
	b.phase(t, "live-privileges")
}

const noCapabilities = "0000000000000000"

// leastPrivilege: vmm (the vm container's first process) and its QEMU child
// run as the vm container's runAsUser in all four uid and gid fields, with no
// capability (effective, permitted, bounding, ambient), no_new_privs and the
// pod's RuntimeDefault seccomp filter; dnsmasq runs as nobody with NET_ADMIN
// (bit 12) its only effective capability, filtered too; no container has a
// service-account token in its filesystem. It returns what it checked.
func leastPrivilege(t *testing.T, k *kube.Cluster, ns, pod string) string {
	t.Helper()
	p, err := k.Client.CoreV1().Pods(ns).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var uid int64 = -1
	for _, c := range p.Spec.Containers {
		if c.Name == "vm" && c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = *c.SecurityContext.RunAsUser
		}
	}
	if uid < 0 {
		t.Fatalf("%s: the vm container has no runAsUser", pod)
	}
	ctrd := node.Containerd{Ctr: cfg.ctr, Address: cfg.containerd}
	taskPid := func(container string) int {
		s, ok := kube.ContainerStatus(p, container)
		if !ok {
			t.Fatalf("%s: no status of %s", pod, container)
		}
		pid, err := ctrd.TaskPid(t.Context(), s.ContainerID)
		if err != nil {
			t.Fatalf("%s: no running %s container task: %v", pod, container, err)
		}
		return pid
	}
	vmm := taskPid("vm")
	qemu, err := node.Child(vmm, "qemu")
	if err != nil {
		t.Fatalf("%s: no QEMU child of vmm: %v", pod, err)
	}
	dnsmasq := taskPid("dnsmasq")

	ids := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid)
	nobody := "65534 65534 65534 65534"
	checks := []struct {
		pid  int
		want map[string]string
	}{
		{vmm, map[string]string{"Uid": ids, "Gid": ids, "CapEff": noCapabilities, "CapPrm": noCapabilities, "CapBnd": noCapabilities, "CapAmb": noCapabilities, "NoNewPrivs": "1", "Seccomp": "2"}},
		{qemu, map[string]string{"Uid": ids, "Gid": ids, "CapEff": noCapabilities, "CapPrm": noCapabilities, "CapBnd": noCapabilities, "CapAmb": noCapabilities, "NoNewPrivs": "1", "Seccomp": "2"}},
		{dnsmasq, map[string]string{"Uid": nobody, "CapEff": "0000000000001000", "Seccomp": "2"}},
	}
	for _, c := range checks {
		st, err := node.ProcStatus(c.pid)
		if err != nil {
			t.Fatalf("%s: %v", pod, err)
		}
		for field, want := range c.want {
			if st[field] != want {
				t.Errorf("%s: pid %d (%s): %s is %q, want %q", pod, c.pid, node.Comm(c.pid), field, st[field], want)
			}
		}
	}
	for name, pid := range map[string]int{"vm": vmm, "dnsmasq": dnsmasq} {
		token := fmt.Sprintf("/proc/%d/root/var/run/secrets/kubernetes.io/serviceaccount", pid)
		if _, err := os.Lstat(token); err == nil {
			t.Errorf("%s/%s: a service-account token is mounted", pod, name)
		} else if !os.IsNotExist(err) {
			t.Errorf("%s/%s: %v", pod, name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return fmt.Sprintf("%s: vmm and QEMU uid/gid %d, no capabilities, no_new_privs, seccomp; dnsmasq nobody with NET_ADMIN only; no token", pod, uid)
}
