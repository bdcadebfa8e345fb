//go:build e2e

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-vm/berth/e2e/internal/guest"
	"github.com/berth-vm/berth/e2e/internal/helm"
	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/phase"
	"github.com/berth-vm/berth/e2e/internal/wait"
)

// Bad input through the chart (issue 10, docs/reliability.md "Bad input
// through the chart"). Every value the chart refuses is refused by helm
// itself (values.schema.json or a template check) with a message naming the
// key (TestChartRefuses, no cluster needed); every value the chart accepts
// but a stage refuses gives the VM's pod a container that exits 2, is
// restarted and refuses again, with a termination message naming the
// variable and the value (TestBadInput). All bad VMs are in one release
// beside a good VM, which stays Ready with no container restarted.

const (
	badRelease = "bad"
	badSuite   = "bad-input"
	badClass   = "berth-bad-input" // a StorageClass and PVs of this test only
	badLabel   = "berth.dev/bad-input"
)

// chartCase is a value helm refuses: helm template fails naming want.
type chartCase struct {
	name, value, want string
	yaml              string // vms.v's lines, indented 4
}

var chartCases = []chartCase{
	{"image.target '..'", "..", "target", `    image: {source: http://files.example/guest.qcow2, target: ".."}`},
	{"image.target with a path", "../etc/passwd", "target", `    image: {source: http://files.example/guest.qcow2, target: ../etc/passwd}`},
	{"image.source ftp://", "ftp://files.example/guest.qcow2", "source", `    image: {source: "ftp://files.example/guest.qcow2"}`},
	{"image.source file://", "file:///etc/shadow", "source", `    image: {source: "file:///etc/shadow"}`},
	{"image.source without a host", "http:///guest.qcow2", "source", `    image: {source: "http:///guest.qcow2"}`},
	{"vmIP not an address", "192.168.254.300", "vmIP", `    vmIP: 192.168.254.300`},
	{"vmIP equal to vmGW", "10.0.0.1", "vmIP and vmGW", "    vmIP: 10.0.0.1\n    vmGW: 10.0.0.1"},
	{"VNC beyond loopback without a password", "vnc.listen 10.0.0.5", "passwordSecret", `    vnc: {listen: 10.0.0.5}`},
	// The chart refuses these itself (issue 16: what a stage would refuse is refused before install).
	{"memory below vmm's 128Mi", "64Mi", "memory", `    memory: 64Mi`},
	{"memory with a decimal suffix", "8G", "memory", `    memory: 8G`},
	{"an SSH key that is not base64", "ssh-ed25519 not-base64!! me@laptop", "sshAuthorizedKeys", `    sshAuthorizedKeys: ["ssh-ed25519 not-base64!! me@laptop"]`},
}

// stageCase is a value the chart accepts and a stage refuses: VM vm's
// container exits 2 with a termination message matching message.
type stageCase struct {
	vm, container string
	message       string // a regular expression
	yaml          string // vms.<vm>'s lines, indented 4; @URL@ the file server
	value         string // for the record
}

var stageCases = []stageCase{
	{"vmip-broadcast", "net-setup", `VM_IP="192\.168\.254\.3"`, `    vmIP: 192.168.254.3`, "vmIP 192.168.254.3 (the /30's broadcast)"},
	{"vmgw-other-net", "net-setup", `VM_GW="192\.168\.254\.5".*/30`, `    vmGW: 192.168.254.5`, "vmGW 192.168.254.5 (not in vmIP's /30)"},
	{"userdata-yaml", "seed-iso", `USERDATA="/userdata".*YAML`, `    userData: "#cloud-config\nusers: [unclosed\n"`, "userData '#cloud-config / users: [unclosed'"},
	{"target-dotdot-url", "image-fetch", `IMG_TARGET="\.\."`, `    image: {source: "@URL@/..", target: ""}`, "image.source @URL@/.. (base name '..')"},
	{"target-dotdot-env", "image-fetch", `IMG_TARGET="\.\."`, `    stages: {imageFetch: {extraEnv: [{name: IMG_TARGET, value: ".."}]}}`, "IMG_TARGET '..' (stages.imageFetch.extraEnv)"},
	{"scheme-ftp-env", "image-fetch", `IMG_SOURCE="ftp://`, `    stages: {imageFetch: {extraEnv: [{name: IMG_SOURCE, value: "ftp://files.example/guest.qcow2"}]}}`, "IMG_SOURCE ftp://... (stages.imageFetch.extraEnv)"},
	{"url-no-host-env", "image-fetch", `IMG_SOURCE="http:///guest\.qcow2"`, `    stages: {imageFetch: {extraEnv: [{name: IMG_SOURCE, value: "http:///guest.qcow2"}]}}`, "IMG_SOURCE http:///guest.qcow2, no host (stages.imageFetch.extraEnv; the schema refuses it as image.source)"},
	{"backing-file", "image-fetch", `IMG_SOURCE="http://[^"]*/child\.qcow2".*backing file`, `    image: {source: "@URL@/child.qcow2", target: child.qcow2}`, "a qcow2 with a backing file (served)"},
	{"disk-smaller-than-base", "image-fetch", `DISK_SIZE="1Gi".*smaller than the base`, `    diskSize: 1Gi`, "diskSize 1Gi (the test guest's virtual size is 2Gi)"},
	{"vnc-env", "vm", `VNC_LISTEN="0\.0\.0\.0".*VNC_PASSWORD_FILE`, `    stages: {vmm: {extraEnv: [{name: VNC_LISTEN, value: 0.0.0.0}]}}`, "VNC_LISTEN 0.0.0.0 without a password (stages.vmm.extraEnv)"},
}

// badInput is what the bad-input tests share: where they write and count.
type badInput struct {
	out     string
	timings phase.Timer
	tried   int
	refused int
}

func newBadInput(t *testing.T) *badInput {
	b := &badInput{
		out:     cfg.out,
		timings: phase.Timer{Suite: badSuite, File: filepath.Join(cfg.out, "timings.tsv"), Logf: t.Logf},
	}
	b.timings.Start()
	return b
}

func (b *badInput) phase(t *testing.T, name string) {
	t.Helper()
	if err := b.timings.End(name); err != nil {
		t.Fatal(err)
	}
}

// record is one refused bad input: a row of bad-input.tsv (case, value,
// refused by, container, exit, message) and of results.tsv.
func (b *badInput) record(t *testing.T, name, value, by, container, exit, message string) {
	t.Helper()
	b.refused++
	appendRow(t, filepath.Join(b.out, "bad-input.tsv"), name, value, by, container, exit, message)
	checked := "refused by " + by
	if container != "" {
		checked += fmt.Sprintf(" (%s, exit %s)", container, exit)
	}
	appendRow(t, filepath.Join(b.out, "results.tsv"), "bad input: "+name, checked, "PASS", fmt.Sprintf("%.0f", b.timings.Elapsed().Seconds()))
	t.Logf("PASS: bad input: %s (%s)", name, checked)
}

// result is a row of results.tsv that is no refusal: name, checked, PASS, seconds.
func (b *badInput) result(t *testing.T, name, checked string) {
	t.Helper()
	appendRow(t, filepath.Join(b.out, "results.tsv"), name, checked, "PASS", fmt.Sprintf("%.0f", b.timings.Elapsed().Seconds()))
	t.Logf("PASS: %s (%s)", name, checked)
}

// tsvHeader starts bad-input.tsv (truncate: a new run's file).
func tsvHeader(t *testing.T, truncate bool) {
	t.Helper()
	path := filepath.Join(cfg.out, "bad-input.tsv")
	if _, err := os.Stat(path); err == nil && !truncate {
		return
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("case\tvalue\trefused by\tcontainer\texit\tmessage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendRow(t *testing.T, path string, fields ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, strings.Join(fields, "\t")); err != nil {
		t.Fatal(err)
	}
}

// oneLine joins the lines of s with single spaces.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestChartRefuses: helm template refuses every chart case with a message
// naming the key (helm's own checks; no cluster).
func TestChartRefuses(t *testing.T) {
	tsvHeader(t, true)
	b := newBadInput(t)
	h := helm.Runner{Path: cfg.helm}
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			b.tried++
			values := "vms:\n  v:\n" + c.yaml + "\n"
			if !regexp.MustCompile(`(?m)^    image:`).MatchString(values) {
				values += "    image: {source: http://files.example/guest.qcow2}\n"
			}
			path := filepath.Join(t.TempDir(), "case.yaml")
			if err := os.WriteFile(path, []byte(values), 0o644); err != nil {
				t.Fatal(err)
			}
			_, stderr, err := h.Template(t.Context(), badRelease, cfg.chart, "-f", path)
			if err == nil {
				t.Fatalf("helm accepted %s", c.value)
			}
			msg := oneLine(stderr)
			if !strings.Contains(msg, c.want) {
				t.Fatalf("helm refused %s without naming %s: %s (%v)", c.value, c.want, msg, err)
			}
			by := "helm (chart template)"
			if strings.Contains(msg, "values don't meet the specifications of the schema") {
				by = "helm (schema)"
			}
			b.record(t, c.name, c.value, by, "", "", msg[:min(len(msg), 300)])
		})
	}
	b.phase(t, "helm-refusals")
	if b.refused != len(chartCases) {
		t.Errorf("tried %d bad inputs on helm, %d refused", b.tried, b.refused)
	}
}

// TestBadInputValuesRender: the chart accepts the values TestBadInput
// installs (each bad value is one only a stage can refuse), one StatefulSet a VM.
func TestBadInputValuesRender(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	pub := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthBadInputRenderTestKeyOnlyForHelmTmpl berth-chaos"
	if err := os.WriteFile(values, []byte(badValues("http://files.example", pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := helm.Runner{Path: cfg.helm}.Template(t.Context(), badRelease, cfg.chart, "-f", values)
	if err != nil {
		t.Fatalf("helm template refused the bad-input values: %v: %s", err, oneLine(stderr))
	}
	if got, want := strings.Count(out, "\nkind: StatefulSet\n"), len(stageCases)+1; got != want {
		t.Fatalf("%d StatefulSets rendered, want %d", got, want)
	}
	for _, c := range stageCases {
		if r, err := regexp.Compile(c.message); err != nil || r.MatchString("") {
			t.Errorf("%s: message pattern /%s/ (%v) must compile and not match an empty message", c.vm, c.message, err)
		}
	}
}

// TestBadInput installs one release with a VM per stage case (and a good VM
// unless -good-pod names one to watch) in its own namespace, on its own
// StorageClass, and checks each bad VM is refused by the named stage, again
// after the restart, and nothing else is affected.
func TestBadInput(t *testing.T) {
	for name, v := range map[string]string{"bad-input-srv": cfg.badInputSrv, "bad-input-url": cfg.badInputURL, "ssh-key": cfg.sshKey} {
		if v == "" {
			t.Fatalf("-%s is required", name)
		}
	}
	k, err := kube.Connect(cfg.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	tsvHeader(t, false)
	b := newBadInput(t)
	h := helm.Runner{Path: cfg.helm, Kubeconfig: cfg.kubeconfig}
	ns := cfg.badInputNS
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cleanupBadInput(ctx, t, k, ns)
	})
	k.DiagnoseOnFailure(t, ns)             // registered last: runs first, before the namespace goes
	cleanupBadInput(t.Context(), t, k, ns) // a killed run's
	backingFile(t, filepath.Join(cfg.badInputSrv, "child.qcow2"), "parent.qcow2")

	if _, err := k.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	good := goodVM{ns: ns, pod: badRelease + "-good-0"}
	if cfg.goodPod != "" {
		var ok bool
		good.ns, good.pod, ok = strings.Cut(cfg.goodPod, "/")
		if !ok {
			t.Fatalf("-good-pod %q: want NS/POD", cfg.goodPod)
		}
		good.before = restartCounts(t, k, good.ns, good.pod)
	}
	nodes, err := k.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("the node: %v (%d nodes)", err, len(nodes.Items))
	}
	count := len(stageCases)
	if cfg.goodPod == "" {
		count++
	}
	if err := badStorage(nodes.Items[0].Name, count).Create(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	pub := ""
	if cfg.goodPod == "" {
		b, err := os.ReadFile(cfg.sshKey + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		pub = strings.TrimSpace(string(b))
	}
	if err := os.WriteFile(values, []byte(badValues(cfg.badInputURL, pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Run(t.Context(), "install", badRelease, cfg.chart, "-n", ns, "-f", values); err != nil {
		t.Fatalf("helm install: %v", err)
	} else if err := os.WriteFile(filepath.Join(cfg.out, "bad-input-helm-install.txt"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	b.phase(t, "install")

	// Each bad VM: the named container exits 2, is restarted and refuses again
	// (lastState), its termination message names the variable and the value,
	// and no init container after it ever ran.
	for _, c := range stageCases {
		t.Run(c.vm, func(t *testing.T) {
			b.tried++
			value := strings.ReplaceAll(c.value, "@URL@", cfg.badInputURL)
			pod := badRelease + "-" + c.vm + "-0"
			p, err := k.WaitPod(t.Context(), ns, pod, pod+"/"+c.container+" exited 2 twice", 300*time.Second, t.Logf, func(p *corev1.Pod) (bool, string) {
				if p == nil {
					return false, "no pod"
				}
				s, ok := kube.ContainerStatus(p, c.container)
				if !ok {
					return false, "no status yet"
				}
				last := s.LastTerminationState.Terminated
				return last != nil && last.ExitCode == 2, fmt.Sprintf("restarts %d, state %s, last %s", s.RestartCount, brief(s.State), brief(s.LastTerminationState))
			})
			if err != nil {
				t.Fatalf("%s (%s): %v", c.vm, value, err)
			}
			s, _ := kube.ContainerStatus(p, c.container)
			msg := s.LastTerminationState.Terminated.Message
			if !regexp.MustCompile(c.message).MatchString(msg) {
				t.Fatalf("%s (%s): %s's termination message does not match /%s/: %q", c.vm, value, c.container, c.message, msg)
			}
			if c.container != "vm" {
				if later := laterInitRan(p, c.container); len(later) > 0 {
					t.Fatalf("%s: containers after %s ran: %s", c.vm, c.container, strings.Join(later, ","))
				}
			}
			b.record(t, c.vm, value, c.container, c.container, "2", strings.TrimSpace(strings.ReplaceAll(msg, "\n", " ")))
		})
	}
	b.phase(t, "stage-refusals")

	// No other VM affected.
	t.Run("no-other-vm-affected", func(t *testing.T) {
		checked := ""
		if cfg.goodPod == "" {
			checked = good.bootedHere(t, k)
		} else {
			checked = good.unchanged(t, k)
		}
		// ... and the bad VMs still refuse: none is Ready.
		for _, c := range stageCases {
			p, err := k.Client.CoreV1().Pods(ns).Get(t.Context(), badRelease+"-"+c.vm+"-0", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if kube.Ready(p) {
				t.Fatalf("%s is Ready with a bad value", c.vm)
			}
		}
		b.result(t, "bad input: no other VM affected", checked)
	})
	b.phase(t, "good-vm")
	if cfg.goodPod == "" {
		// Nothing else runs the good VM: its least privilege is checked here (else TestLeastPrivilege).
		t.Run("least-privilege", func(t *testing.T) { b.result(t, "least privilege, live", leastPrivilege(t, k, ns, good.pod)) })
		b.phase(t, "live-privileges")
	}
	if b.refused != b.tried {
		t.Errorf("tried %d bad inputs on the stages, %d refused", b.tried, b.refused)
	}
	t.Logf("bad inputs tried on the stages: %d, refused: %d; see %s", b.tried, b.refused, filepath.Join(cfg.out, "bad-input.tsv"))
}

func badStorage(node string, count int) kube.LocalStorage {
	return kube.LocalStorage{Class: badClass, Label: badLabel, Node: node, Dir: filepath.Join(cfg.clusterDir, "bad-input-pv"), Count: count, Size: "8Gi"}
}

func badImageCache() string { return filepath.Join(cfg.clusterDir, "bad-input-image-cache") }

// cleanupBadInput deletes the namespace (waiting until it is gone), then the
// PVs, the StorageClass, their directories and the image cache.
func cleanupBadInput(ctx context.Context, t *testing.T, k *kube.Cluster, ns string) {
	t.Helper()
	err := k.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", ns, err)
	}
	if err == nil {
		if _, err := wait.For(ctx, "namespace "+ns+" gone", 180*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
			n, err := k.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err != nil {
				return apierrors.IsNotFound(err), err.Error(), nil
			}
			return false, string(n.Status.Phase), nil
		}); err != nil {
			t.Error(err)
		}
	}
	if err := badStorage("", 0).Delete(ctx, k); err != nil {
		t.Error(err)
	}
	if err := os.RemoveAll(badImageCache()); err != nil {
		t.Error(err)
	}
}

// backingFile: the qcow2 at path has the backing file want (the case
// backing-file needs one served).
func backingFile(t *testing.T, path, want string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info struct {
		BackingFilename string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	if info.BackingFilename != want {
		t.Fatalf("%s has backing file %q, want %q", path, info.BackingFilename, want)
	}
}

// badValues: every VM small (the bad ones never boot), the test's own image
// cache and PVs, images from url; a good VM with the SSH key pub unless pub is "".
func badValues(url, pub string) string {
	var v strings.Builder
	fmt.Fprintf(&v, `vmDefaults:
  class_name: %s
  diskSize: 4Gi
  memory: 128Mi
  memoryOverhead: 64Mi
  cpuRequestPerCPU: 10m
  shutdownTimeout: 10
  imageCache: {mode: hostPath, hostPath: %q}
  image: {source: %q, target: berth-testguest.qcow2}
tests: {enabled: false}
vms:
`, badClass, badImageCache(), url+"/guest.qcow2")
	if pub != "" {
		fmt.Fprintf(&v, "  good:\n    cpus: 2\n    memory: 1Gi\n    memoryOverhead: 256Mi\n    diskSize: 4Gi\n    sshAuthorizedKeys: [%q]\n", pub)
	}
	for _, c := range stageCases {
		fmt.Fprintf(&v, "  %s:\n%s\n", c.vm, strings.ReplaceAll(c.yaml, "@URL@", url))
	}
	return v.String()
}

// laterInitRan are the init containers after container (in the pod's order)
// that ever ran.
func laterInitRan(p *corev1.Pod, container string) []string {
	var later []string
	after := false
	for _, s := range p.Status.InitContainerStatuses {
		if after && (s.State.Running != nil || s.State.Terminated != nil || s.LastTerminationState.Terminated != nil) {
			later = append(later, s.Name)
		}
		if s.Name == container {
			after = true
		}
	}
	return later
}

// restartCounts: every container's restart count (init, sidecar, main).
func restartCounts(t *testing.T, k *kube.Cluster, ns, pod string) map[string]int32 {
	t.Helper()
	p, err := k.Client.CoreV1().Pods(ns).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("good pod %s/%s: %v", ns, pod, err)
	}
	counts := map[string]int32{}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range list {
			counts[s.Name] = s.RestartCount
		}
	}
	return counts
}

// goodVM is the VM that must not be affected: watched (before: its restart
// counts when the test began) or booted here.
type goodVM struct {
	ns, pod string
	before  map[string]int32
}

// bootedHere: Ready, SSH answers with its hostname, no container ever restarted.
func (g goodVM) bootedHere(t *testing.T, k *kube.Cluster) string {
	t.Helper()
	p, err := k.WaitPod(t.Context(), g.ns, g.pod, g.pod+" Ready", cfg.bootTimeout, t.Logf, func(p *corev1.Pod) (bool, string) {
		if p == nil {
			return false, "no pod"
		}
		return kube.Ready(p), string(p.Status.Phase)
	})
	if err != nil {
		t.Fatal(err)
	}
	ssh := guest.SSH{Key: cfg.sshKey, NetNS: cfg.nodeNetNS}
	if err := ssh.WaitUp(t.Context(), p.Status.PodIP, 120*time.Second, t.Logf); err != nil {
		t.Fatalf("%s Ready but SSH does not answer: %v", g.pod, err)
	}
	var total int32
	for _, n := range restartCounts(t, k, g.ns, g.pod) {
		total += n
	}
	if total != 0 {
		t.Fatalf("the good VM's containers restarted %d times", total)
	}
	name, err := ssh.Line(t.Context(), p.Status.PodIP, "hostname")
	if err != nil {
		t.Fatalf("SSH to the good VM: %v", err)
	}
	if name != "good" {
		t.Fatalf("the good VM's hostname is %q", name)
	}
	return "the good VM of the same release Ready, SSH, 0 restarts"
}

// unchanged: the watched VM is Ready and its restart counts are those of the start.
func (g goodVM) unchanged(t *testing.T, k *kube.Cluster) string {
	t.Helper()
	after := restartCounts(t, k, g.ns, g.pod)
	if fmt.Sprint(after) != fmt.Sprint(g.before) {
		t.Fatalf("%s/%s restarted containers: %v -> %v", g.ns, g.pod, g.before, after)
	}
	p, err := k.Client.CoreV1().Pods(g.ns).Get(t.Context(), g.pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !kube.Ready(p) {
		t.Fatalf("%s/%s is not Ready any more", g.ns, g.pod)
	}
	return fmt.Sprintf("%s/%s Ready, restart counts unchanged %v", g.ns, g.pod, after)
}
