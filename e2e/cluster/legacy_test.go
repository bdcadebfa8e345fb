//go:build e2e

package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/phase"
)

const (
	legacyRelease = "legacy"
	legacyVM      = "old"
	legacyClass   = "berth-e2e-legacy"
)

// The chart's refusal of a release an earlier chart made (chart/templates/_disks.tpl, berth.migration).
var migrationRE = regexp.MustCompile(`made by an earlier chart version`)

// migration is the state the legacy steps hand on.
type migration struct {
	*scenario
	dir     string // the test's own directory (values files)
	storage kube.LocalStorage
	values  string
	pod     *corev1.Pod
	ip      string
	message string // the chart's refusal, with the commands
}

// legacyUnknown are vm1's values (ci/e2e/values.yaml.in) that came after the
// earlier chart: its strict schema refuses them.
var legacyUnknown = []string{"metrics"}

// TestDiskMigration: a VM made by the chart before issue 18 (a StatefulSet
// with volumeClaimTemplates, the overlay at the volume's root) is upgraded
// with the commands the chart's refusal prints, and keeps its disk.
func TestDiskMigration(t *testing.T) {
	if cfg.legacyChart == "" {
		t.Skip("-legacy-chart not given (ci/e2e/cluster-test.sh: E2E_LEGACY=0)")
	}
	s := newScenario(t)
	m := &migration{scenario: s, dir: t.TempDir()}
	t.Cleanup(func() { m.teardown(t) }) // after the diagnostics (cleanups run last first)
	s.k.DiagnoseOnFailure(t, s.cfg.namespace)
	phase.RunSteps(t, &s.timings, []phase.Step{
		{Name: "legacy-install", Run: m.install},
		{Name: "legacy-refused", Run: m.refused},
		{Name: "legacy-migrate", Run: m.migrate},
		{Name: "legacy-uninstall", Run: m.uninstall},
	})
}

// The earlier chart on a volume as the earlier cluster made them (a local PV
// of mode 0777: that chart has no step taking ownership of a root-owned one).
func (m *migration) install(t *testing.T) {
	ctx := t.Context()
	nodes, err := m.k.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("the cluster's node: %d nodes, %v", len(nodes.Items), err)
	}
	m.storage = kube.LocalStorage{Class: legacyClass, Label: "berth-e2e/legacy-pv", Node: nodes.Items[0].Name,
		Dir: filepath.Join(m.cfg.clusterDir, "e2e-legacy-pv"), Count: 1, Size: "10Gi"}
	_ = m.storage.Delete(ctx, m.k) // a kept cluster's
	if err := m.storage.Create(ctx, m.k); err != nil {
		t.Fatal(err)
	}
	vm1, rest := m.vm1Settings(t)
	for _, key := range legacyUnknown {
		delete(vm1, key)
	}
	m.values = writeValues(t, m.dir, legacyRelease, rest, map[string]any{legacyVM: diskVMValues(vm1, legacyClass, rootSize, nil)})
	if out, err := m.helm.Run(ctx, "install", legacyRelease, m.cfg.legacyChart, "-n", m.cfg.namespace, "-f", m.values); err != nil {
		t.Fatalf("helm install of the earlier chart: %v\n%s", err, out)
	}
	m.pod = m.waitVMReady(t, legacyVM, "")
	m.ip = m.pod.Status.PodIP
	if _, err := m.ssh.Run(ctx, m.ip, "echo "+m.cfg.marker+"-legacy | sudo tee /var/tmp/legacy >/dev/null && sync"); err != nil {
		t.Fatalf("write a file in the guest: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.volume(t), legacyVM+".qcow2")); err != nil {
		t.Errorf("the earlier chart's overlay is not at the volume's root: %v", err)
	}
}

// teardown removes the release, its PVC and the test's local PV, whatever
// the steps got to.
func (m *migration) teardown(t *testing.T) {
	if m.storage.Class == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, _ = m.helm.Run(ctx, "uninstall", legacyRelease, "-n", m.cfg.namespace, "--wait", "--timeout", "120s")
	_ = m.k.Client.CoreV1().PersistentVolumeClaims(m.cfg.namespace).Delete(ctx, rootClaim(legacyRelease, legacyVM), metav1.DeleteOptions{})
	if _, err := m.k.WaitPod(ctx, m.cfg.namespace, legacyRelease+"-"+legacyVM+"-0", "the legacy pod gone", time.Minute, nil,
		func(p *corev1.Pod) (bool, string) { return p == nil, "" }); err != nil {
		t.Log(err)
	}
	if err := m.storage.Delete(ctx, m.k); err != nil {
		t.Log(err)
	}
}

// volume is the legacy PV's directory on the node.
func (m *migration) volume(t *testing.T) string {
	t.Helper()
	return filepath.Join(m.storage.Dir, "1")
}

// helm upgrade with this chart fails with the migration message and changes nothing.
func (m *migration) refused(t *testing.T) {
	_, err := m.helm.Run(t.Context(), "upgrade", legacyRelease, m.cfg.chart, "-n", m.cfg.namespace, "-f", m.values)
	if err == nil {
		t.Fatal("helm upgrade of a release with volumeClaimTemplates succeeded without the migration steps")
	}
	if !migrationRE.MatchString(err.Error()) {
		t.Fatalf("helm upgrade failed without the chart's migration message: %v", err)
	}
	m.message = err.Error()
	t.Logf("the chart's refusal:\n%s", m.message)
	p, err := m.k.Client.CoreV1().Pods(m.cfg.namespace).Get(t.Context(), m.pod.Name, metav1.GetOptions{})
	if err != nil || p.UID != m.pod.UID || !kube.Ready(p) {
		t.Errorf("the legacy VM's pod after the refused upgrade: %v (ready %t)", err, err == nil && kube.Ready(p))
	}
}

// The commands the refusal prints, run as a user pastes them; then helm
// upgrade succeeds, the pod restarts once on the same disk, image-fetch moved
// the overlay into berth/, and the guest's file is there.
func (m *migration) migrate(t *testing.T) {
	ctx := t.Context()
	cmds := kubectlLines(m.message)
	if len(cmds) == 0 {
		t.Fatalf("the refusal prints no kubectl command:\n%s", m.message)
	}
	for _, c := range cmds {
		if out, err := m.kubectl(ctx, c); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	if _, err := m.helm.Run(ctx, "upgrade", legacyRelease, m.cfg.chart, "-n", m.cfg.namespace, "-f", m.values); err != nil {
		t.Fatalf("helm upgrade after the migration commands: %v", err)
	}
	m.pod = m.waitVMReady(t, legacyVM, m.pod.UID)
	m.ip = m.pod.Status.PodIP
	got, err := m.ssh.Line(ctx, m.ip, "cat /var/tmp/legacy")
	if want := m.cfg.marker + "-legacy"; got != want {
		t.Errorf("the guest's file after the migration: %q (%v), want %q", got, err, want)
	}
	if claims := kube.ClaimNames(m.pod); !slices.Contains(claims, rootClaim(legacyRelease, legacyVM)) {
		t.Errorf("the migrated pod mounts %q, not the earlier PVC %s", claims, rootClaim(legacyRelease, legacyVM))
	}
	vol := m.volume(t)
	if _, err := os.Lstat(filepath.Join(vol, legacyVM+".qcow2")); err == nil {
		t.Errorf("%s.qcow2 is still at the volume's root after the migration", legacyVM)
	}
	if _, err := os.Stat(filepath.Join(vol, "berth", legacyVM+".qcow2")); err != nil {
		t.Errorf("the overlay is not in berth/ after the migration: %v", err)
	}
	log, err := m.k.Logs(ctx, m.cfg.namespace, m.pod.Name, corev1.PodLogOptions{Container: "image-fetch"})
	if err != nil {
		t.Fatal(err)
	}
	if l := firstLine(log, func(l string) bool {
		return strings.Contains(l, legacyVM+".qcow2") && regexp.MustCompile(`(?i)mov|renam`).MatchString(l)
	}); l == "" {
		t.Errorf("image-fetch did not log the move of the overlay:\n%s", tail(log, 15))
	} else {
		t.Logf("image-fetch: %s", l)
	}
}

func (m *migration) uninstall(t *testing.T) {
	if _, err := m.helm.Run(t.Context(), "uninstall", legacyRelease, "-n", m.cfg.namespace, "--wait", "--timeout", "240s"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.k.GetClaim(t.Context(), m.cfg.namespace, rootClaim(legacyRelease, legacyVM)); err != nil {
		t.Errorf("helm uninstall removed the migrated PVC: %v", err)
	}
}

// kubectlLines are the kubectl command lines of a message, as words.
func kubectlLines(msg string) [][]string {
	var cmds [][]string
	for _, l := range strings.Split(msg, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "kubectl" {
			cmds = append(cmds, f[1:])
		}
	}
	return cmds
}

// kubectl runs kubectl args against the test's cluster, bounded.
func (m *migration) kubectl(ctx context.Context, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.cfg.kubectl, append([]string{"--kubeconfig", m.cfg.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}
