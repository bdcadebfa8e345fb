//go:build e2e

// Package cluster is the end-to-end test of the chart on a real single-node
// cluster (ci/cluster/up): everything a user does with one VM, in order, for
// the cluster's CNI setup. ci/e2e/cluster-test.sh brings the cluster, the
// images, the test guest and the file server pod up and runs this with flags;
// docs/e2e.md lists the steps.
package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/e2e/internal/guest"
	"github.com/berth-vm/berth/e2e/internal/helm"
	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/netns"
	"github.com/berth-vm/berth/e2e/internal/phase"
	"github.com/berth-vm/berth/e2e/internal/wait"
)

// scenario is the state the steps hand on: vm1's pod and address, the GETs of
// the image counted after the first download, the PVCs of the release.
type scenario struct {
	cfg     *config
	k       *kube.Cluster
	helm    helm.Runner
	ssh     guest.SSH
	node    netns.Dialer
	timings phase.Timer

	pod        *corev1.Pod // vm1's
	ip         string
	gets       int
	pvc1, pvc2 string
}

type step struct {
	name  string
	full  bool // only in the full scenario
	check func(s *scenario, t *testing.T)
}

var steps = []step{
	{"boot-vm1", false, (*scenario).bootVM1},
	{"guest-checks", false, (*scenario).guestChecks},
	{"metrics", false, (*scenario).metrics},
	{"console-vnc", false, (*scenario).consoleVNC},
	{"web-console", false, (*scenario).webConsole},
	{"serial-console", false, (*scenario).serialConsole},
	{"image-downloaded", false, (*scenario).imageDownloaded},
	{"delete-pod", true, (*scenario).deletePod},
	{"reboot-vm1", true, (*scenario).rebootVM1},
	{"upgrade-memory", true, (*scenario).upgradeMemory},
	{"stop-start", true, (*scenario).stopStart},
	{"second-vm", true, (*scenario).secondVM},
	{"helm-test", false, (*scenario).helmTest},
	{"uninstall", false, (*scenario).uninstall},
}

// TestCluster runs the steps in order; the first failing step ends the test.
func TestCluster(t *testing.T) {
	s := newScenario(t)
	s.k.DiagnoseOnFailure(t, s.cfg.namespace)
	var run []phase.Step
	for _, st := range steps {
		if st.full && !s.cfg.full {
			continue
		}
		run = append(run, phase.Step{Name: st.name, Run: func(t *testing.T) { st.check(s, t) }})
	}
	phase.RunSteps(t, &s.timings, run)
	if !s.cfg.full {
		t.Logf("CNI=%s: short scenario: no delete-pod, upgrade, second VM", s.cfg.cni)
	}
}

func newScenario(t *testing.T) *scenario {
	c := cfg
	for flagName, v := range map[string]string{"values": c.values, "ssh-key": c.sshKey, "marker": c.marker,
		"console-password": c.consolePassword, "image-path": c.imagePath} {
		if v == "" {
			t.Fatalf("-%s is required", flagName)
		}
	}
	if c.cni != "bridge" && c.cni != "calico-like" {
		t.Fatalf("-cni %q: allowed values are bridge, calico-like", c.cni)
	}
	k, err := kube.Connect(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		t.Fatal(err)
	}
	return &scenario{
		cfg:     c,
		k:       k,
		helm:    helm.Runner{Path: c.helm, Kubeconfig: c.kubeconfig},
		ssh:     guest.SSH{Key: c.sshKey, NetNS: c.nodeNetNS},
		node:    netns.Dialer{Path: c.nodeNetNS},
		timings: phase.Timer{Suite: c.cni, File: filepath.Join(c.out, "timings.tsv"), Logf: t.Logf},
	}
}

// vmPodName is the pod running vm (its vm container has VM_NAME=vm, or it is
// <...>vm-0), not being deleted; "" when there is none.
func (s *scenario) vmPodName(ctx context.Context, vm string) (string, error) {
	pods, err := s.k.Client.CoreV1().Pods(s.cfg.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list pods: %w", err)
	}
	named := regexp.MustCompile("(^|-)" + regexp.QuoteMeta(vm) + "-0$")
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if n, ok := kube.Env(&p, "vm", "VM_NAME"); (ok && n == vm) || named.MatchString(p.Name) {
			return p.Name, nil
		}
	}
	return "", nil
}

// vmName is the VM_NAME the pod's vm container runs with (default: the pod's name).
func vmName(pod *corev1.Pod) string {
	if n, ok := kube.Env(pod, "vm", "VM_NAME"); ok && n != "" {
		return n
	}
	return pod.Name
}

// waitVMReady waits for a pod of vm (not of uid old) Ready, then SSH at its IP.
func (s *scenario) waitVMReady(t *testing.T, vm string, old types.UID) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	var pod *corev1.Pod
	_, err := wait.For(ctx, vm+": a Ready pod", s.cfg.bootTimeout, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		name, err := s.vmPodName(ctx, vm)
		if err != nil || name == "" {
			return false, fmt.Sprintf("no pod (%v); %s", err, s.k.Summary(ctx, s.cfg.namespace)), nil
		}
		p, err := s.k.Client.CoreV1().Pods(s.cfg.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if p.UID == old || !kube.Ready(p) {
			return false, s.k.Summary(ctx, s.cfg.namespace), nil
		}
		pod = p
		return true, "", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ssh.WaitUp(ctx, pod.Status.PodIP, 120*time.Second, t.Logf); err != nil {
		t.Fatalf("%s: pod %s Ready but SSH at %s does not answer: %v", vm, pod.Name, pod.Status.PodIP, err)
	}
	return pod
}

// imageGets is how many times the file server served the guest image (GET).
func (s *scenario) imageGets(t *testing.T) int {
	t.Helper()
	log, err := s.k.Logs(t.Context(), s.cfg.namespace, s.cfg.fileserver, corev1.PodLogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(log, "method=GET path="+s.cfg.imagePath+" ")
}

func (s *scenario) out(name string) string {
	return filepath.Join(s.cfg.out, fmt.Sprintf(name, s.cfg.cni))
}

// 1. install, boot, SSH; the pod IP has the CNI's shape.
func (s *scenario) bootVM1(t *testing.T) {
	out, err := s.helm.Run(t.Context(), "install", s.cfg.release, s.cfg.chart, "-n", s.cfg.namespace, "-f", s.cfg.values)
	if werr := os.WriteFile(s.out("helm-install-%s.txt"), []byte(out), 0o644); werr != nil {
		t.Error(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.pod = s.waitVMReady(t, "vm1", "")
	s.ip = s.pod.Status.PodIP
	t.Logf("vm1 runs in pod %s at %s", s.pod.Name, s.ip)
	prefix := map[string]string{"bridge": "10.244.0.", "calico-like": "10.244.1."}[s.cfg.cni]
	if !strings.HasPrefix(s.ip, prefix) {
		t.Errorf("%s pod IP %s not in %s0/24", s.cfg.cni, s.ip, prefix)
	}
}

// hostname, the user-data marker, the guest's search domains = the pod's.
func (s *scenario) guestChecks(t *testing.T) {
	ctx := t.Context()
	got, err := s.ssh.Line(ctx, s.ip, "hostname")
	if err != nil {
		t.Fatal(err)
	}
	if want := vmName(s.pod); got != want {
		t.Errorf("hostname: the guest says %q, the VM is %q", got, want)
	}
	// The user-data's runcmd comes in cloud-init's final stage: on a loaded machine that came
	// minutes after SSH answered. The marker is polled, each attempt bounded.
	if _, err := wait.For(ctx, "the user-data marker in /var/tmp/berth-e2e-marker", 300*time.Second, 5*time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		out, err := s.ssh.Run(ctx, s.ip, "cat /var/tmp/berth-e2e-marker")
		return slices.Contains(strings.Split(out, "\n"), s.cfg.marker), fmt.Sprintf("%q %v", out, err), nil
	}); err != nil {
		t.Errorf("user-data marker %s: %v", s.cfg.marker, err)
	}
	// The pod's search domains as the kubelet writes them for every ClusterFirst pod of the
	// namespace (the Berth images have no cat: read them in the file server pod beside it).
	podConf, err := s.k.Exec(ctx, s.cfg.namespace, s.cfg.fileserver, "", "cat", "/etc/resolv.conf")
	if err != nil {
		t.Fatalf("read the pod's resolv.conf: %v", err)
	}
	podSearch := guest.SearchDomains(podConf)
	if len(podSearch) == 0 {
		t.Fatalf("the pod's resolv.conf has no search line:\n%s", podConf)
	}
	guestConf, err := s.ssh.Run(ctx, s.ip, "cat /etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if guestSearch := guest.SearchDomains(guestConf); !slices.Equal(guestSearch, podSearch) {
		more, _ := s.ssh.Run(ctx, s.ip, "ls -l /etc/resolv.conf; cat /etc/resolv.conf; ls /var/lib/dhcp/; cat /var/lib/dhcp/*.leases; ls /etc/network/interfaces.d; cat /etc/network/interfaces.d/*")
		t.Errorf("guest search domains %q, the pod's %q; the guest's resolv.conf:\n%s", guestSearch, podSearch, more)
	}
	if want := s.cfg.namespace + ".svc.cluster.local"; podSearch[0] != want {
		t.Errorf("search domains %q do not start with %s", podSearch, want)
	}
}

// The console in the logs; VNC through port-forward and not on the pod IP.
func (s *scenario) consoleVNC(t *testing.T) {
	ctx := t.Context()
	console, err := s.k.Logs(ctx, s.cfg.namespace, s.pod.Name, corev1.PodLogOptions{Container: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Linux version|login:|Debian GNU/Linux|cloud-init`).MatchString(console) {
		t.Errorf("the logs of container vm show no guest console output:\n%s", tail(console, 20))
	}
	fw, err := s.k.PortForward(s.cfg.namespace, s.pod.Name, 0, 5900)
	if err != nil {
		t.Fatal(err)
	}
	banner, err := readBanner(ctx, netns.Dialer{}, fmt.Sprintf("127.0.0.1:%d", fw.Local), 10*time.Second)
	fw.Close()
	if !regexp.MustCompile(`^RFB 00\d\.00\d\n$`).MatchString(banner) {
		t.Errorf("port-forward to 5900: expected an RFB banner, got %q (%v)", banner, err)
	}
	// TCP 5900 on the pod IP stays in the pod (QEMU's VNC listens on 127.0.0.1 only): with a server
	// in the guest on 5900 and on 5901, 5901 answers from the pod IP (the control) and 5900 does not.
	if _, err := s.ssh.Run(ctx, s.ip, `for p in 5900 5901; do mkdir -p /tmp/www$p && echo guest-$p >/tmp/www$p/index.html || exit 1;
		setsid python3 -m http.server $p --directory /tmp/www$p >/dev/null 2>&1 </dev/null & done`); err != nil {
		t.Fatalf("start HTTP servers on 5900/5901 in the guest: %v", err)
	}
	web := s.node.HTTPClient(5 * time.Second)
	if _, err := wait.For(ctx, "the guest's 5901 through the pod IP", 30*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		body, err := httpGet(ctx, web, "http://"+s.ip+":5901/")
		return err == nil && strings.Contains(body, "guest-5901"), fmt.Sprintf("%q %v", body, err), nil
	}); err != nil {
		t.Errorf("TCP 5901 on the pod IP does not reach the guest (DNAT of every other port): %v", err)
	}
	if _, err := wait.For(ctx, "the guest's own server on 5900, in the guest", 120*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		out, err := s.ssh.Run(ctx, s.ip, `python3 -c "import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:5900/\", timeout=10).read().decode())"`)
		return slices.Contains(strings.Split(out, "\n"), "guest-5900"), fmt.Sprintf("%q %v", out, err), nil
	}); err != nil {
		t.Fatalf("the guest's own server on 5900 does not answer in the guest: %v", err)
	}
	if body, err := httpGet(ctx, web, "http://"+s.ip+":5900/"); strings.Contains(body, "guest-5900") {
		t.Errorf("TCP 5900 on the pod IP reached the guest (%v)", err)
	}
	if banner, _ := readBanner(ctx, s.node, s.ip+":5900", 5*time.Second); strings.HasPrefix(banner, "RFB") {
		t.Errorf("TCP 5900 on the pod IP reached QEMU's VNC (VNC_LISTEN should be 127.0.0.1): %q", banner)
	}
}

// The web console as the chart's NOTES say: port-forward 6080 on this machine's
// loopback, noVNC in Chromium (ci/console/web-console.mjs) Connected and showing the guest.
func (s *scenario) webConsole(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6080", time.Second); err == nil {
		c.Close()
		t.Fatal("127.0.0.1:6080 on this machine is taken; the test forwards the port the NOTES print")
	}
	fw, err := s.k.PortForward(s.cfg.namespace, s.pod.Name, 6080, 6080)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.node, s.cfg.webConsole, "http://localhost:6080/vnc.html", s.out("web-console-%s.png"))
	log, err := cmd.CombinedOutput()
	if werr := os.WriteFile(s.out("web-console-%s.log"), log, 0o644); werr != nil {
		t.Error(werr)
	}
	if err != nil {
		tailLines := int64(20)
		novnc, _ := s.k.Logs(t.Context(), s.cfg.namespace, s.pod.Name, corev1.PodLogOptions{Container: "novnc", TailLines: &tailLines})
		t.Fatalf("noVNC through port-forward 6080: %v (screenshot %s):\n%s\nnovnc:\n%s", err, s.out("web-console-%s.png"), log, novnc)
	}
	t.Logf("web console:\n%s", log)
}

// The interactive serial console through kubectl attach -it (as a person
// does): log in, a command answered, log out, detach; the VM still runs (no
// restart) and its logs show the session.
func (s *scenario) serialConsole(t *testing.T) {
	ctx := t.Context()
	restarts := kube.RestartCount(s.pod, "vm")
	word := fmt.Sprintf("serial-%d", time.Now().UnixNano()%1e9)
	transcript := s.out("serial-console-%s.txt")
	cctx, cancel := context.WithTimeout(ctx, 400*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, s.cfg.serialConsole, "--transcript", transcript, "--marker", word, "--",
		s.cfg.kubectl, "--kubeconfig", s.cfg.kubeconfig, "-n", s.cfg.namespace, "attach", "-it", s.pod.Name, "-c", "vm")
	cmd.Env = append(os.Environ(), "CONSOLE_PASSWORD="+s.cfg.consolePassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the serial console through kubectl attach: %v (transcript %s):\n%s", err, transcript, out)
	}
	time.Sleep(2 * time.Second)
	p, err := s.k.Client.CoreV1().Pods(s.cfg.namespace).Get(ctx, s.pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kube.RestartCount(p, "vm"); got != restarts {
		t.Errorf("the vm container restarted after kubectl attach detached (restarts %d -> %d)", restarts, got)
	}
	if _, err := s.ssh.Run(ctx, s.ip, "true"); err != nil {
		t.Errorf("the VM does not answer SSH after kubectl attach detached: %v", err)
	}
	tailLines := int64(200)
	log, err := s.k.Logs(ctx, s.cfg.namespace, s.pod.Name, corev1.PodLogOptions{Container: "vm", TailLines: &tailLines})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, word+"-42") {
		t.Errorf("the logs of container vm lack the serial session's answer %s-42", word)
	}
}

// image-fetch downloaded the image from the file server; vm1's PVC.
func (s *scenario) imageDownloaded(t *testing.T) {
	s.gets = s.imageGets(t)
	if s.gets < 1 {
		t.Errorf("the file server served no GET of %s: image-fetch did not download from it", s.cfg.imagePath)
	}
	if claims := kube.ClaimNames(s.pod); len(claims) > 0 {
		s.pvc1 = claims[0]
	}
	if s.pvc1 == "" {
		t.Fatalf("pod %s mounts no PVC", s.pod.Name)
	}
	s.imageFetchWritable(t, s.pod)
	s.rootOwnedVolume(t, s.pvc1)
}

// rootOwnedVolume: the PV behind the claim is a directory of this node owned
// by root, mode 0755 (as a user's hostPath or NFS volume is): the VM ran on it.
func (s *scenario) rootOwnedVolume(t *testing.T, claim string) {
	t.Helper()
	cl, err := s.k.GetClaim(t.Context(), s.cfg.namespace, claim)
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.k.VolumeRoot(t.Context(), cl.Volume, filepath.Join(s.cfg.clusterDir, "kubelet"), string(s.pod.UID))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		t.Fatalf("PV %s of %s: %v", cl.Volume, claim, err)
	}
	if st.Uid != 0 || st.Mode&0o7777 != 0o755 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("PV %s of %s (%s): %s uid %d mode %o, want a directory of root's, 0755", cl.Volume, claim, cl.Class, root, st.Uid, st.Mode&0o7777)
	}
}

// 3. a file survives the pod's deletion; a clean ACPI power-off in the console.
func (s *scenario) deletePod(t *testing.T) {
	ctx := t.Context()
	if _, err := s.ssh.Run(ctx, s.ip, "echo "+s.cfg.marker+"-persist | sudo tee /var/tmp/persist >/dev/null && sync"); err != nil {
		t.Fatalf("write a file in the guest: %v", err)
	}
	s.shutsDownCleanly(t, "console-shutdown-%s.txt", "kubectl delete pod", func() error {
		_, err := s.k.DeletePod(ctx, s.cfg.namespace, s.pod.Name, 180*time.Second, t.Logf)
		return err
	})
}

// shutsDownCleanly follows vm1's console while stop ends its pod, keeps the console in file (an
// s.out pattern) and fails unless the guest powered off over ACPI before the pod went.
func (s *scenario) shutsDownCleanly(t *testing.T, file, how string, stop func() error) {
	t.Helper()
	since := int64(1)
	end, err := s.k.Follow(t.Context(), s.cfg.namespace, s.pod.Name, corev1.PodLogOptions{Container: "vm", SinceSeconds: &since})
	if err != nil {
		t.Fatal(err)
	}
	err = stop()
	console := end()
	if werr := os.WriteFile(s.out(file), []byte(console), 0o644); werr != nil {
		t.Error(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`reboot: Power down|System is powered off|Power-Off|powering off`).MatchString(console) {
		t.Errorf("%s: no clean ACPI shutdown in the console before the pod went (see %s):\n%s", how, s.out(file), tail(console, 20))
	}
}

// The StatefulSet's new pod: Ready, SSH, the file there, no second download.
func (s *scenario) rebootVM1(t *testing.T) {
	s.pod = s.waitVMReady(t, "vm1", s.pod.UID)
	s.ip = s.pod.Status.PodIP
	s.persisted(t, "kubectl delete pod")
	if got := s.imageGets(t); got != s.gets {
		t.Errorf("the image was downloaded again after the pod was recreated (%d -> %d GETs)", s.gets, got)
	}
}

// persisted checks the file written before the delete-pod step.
func (s *scenario) persisted(t *testing.T, across string) {
	t.Helper()
	got, err := s.ssh.Line(t.Context(), s.ip, "cat /var/tmp/persist")
	if want := s.cfg.marker + "-persist"; got != want {
		t.Errorf("the file did not survive %s: %q (%v)", across, got, err)
	}
}

// 4. helm upgrade changing the memory: restarted with it, the same disk.
func (s *scenario) upgradeMemory(t *testing.T) {
	if _, err := s.helm.Run(t.Context(), "upgrade", s.cfg.release, s.cfg.chart, "-n", s.cfg.namespace, "-f", s.cfg.values,
		"--set", "vms.vm1.memory=1536Mi"); err != nil {
		t.Fatal(err)
	}
	s.pod = s.waitVMReady(t, "vm1", s.pod.UID)
	s.ip = s.pod.Status.PodIP
	line, err := s.ssh.Line(t.Context(), s.ip, "awk '/MemTotal/ { print $2 }' /proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	kb, err := strconv.Atoi(line)
	if err != nil || kb <= 1300*1024 || kb > 1536*1024 {
		t.Errorf("after helm upgrade the guest has MemTotal %q kB, expected 1536 MiB", line)
	}
	s.persisted(t, "helm upgrade")
}

// 4b. running: false by helm upgrade stops vm1 (an ACPI shutdown, the pod gone, the StatefulSet at
// 0 replicas, its PVC kept and bound); running: true starts it again on the same disk.
func (s *scenario) stopStart(t *testing.T) {
	ctx := t.Context()
	upgrade := func(running string) {
		t.Helper()
		if _, err := s.helm.Run(ctx, "upgrade", s.cfg.release, s.cfg.chart, "-n", s.cfg.namespace, "-f", s.cfg.values,
			"--set", "vms.vm1.memory=1536Mi", "--set", "vms.vm1.running="+running); err != nil {
			t.Fatal(err)
		}
	}
	s.shutsDownCleanly(t, "console-stop-%s.txt", "running: false", func() error {
		upgrade("false")
		// Gone, not only terminating: the pod's deletion is what powers the guest down.
		_, err := wait.For(ctx, "vm1: no pod after running: false", 180*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
			_, err := s.k.Client.CoreV1().Pods(s.cfg.namespace).Get(ctx, s.pod.Name, metav1.GetOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return false, "", err
			}
			name, lerr := s.vmPodName(ctx, "vm1")
			return apierrors.IsNotFound(err) && lerr == nil && name == "", s.k.Summary(ctx, s.cfg.namespace), nil
		})
		return err
	})
	sts, err := s.k.Client.AppsV1().StatefulSets(s.cfg.namespace).Get(ctx, s.cfg.release+"-vm1", metav1.GetOptions{})
	switch {
	case err != nil:
		t.Errorf("running: false: the StatefulSet: %v", err)
	case sts.Spec.Replicas == nil || *sts.Spec.Replicas != 0:
		t.Errorf("running: false: the StatefulSet has replicas %v, want 0", sts.Spec.Replicas)
	}
	claim, err := s.k.GetClaim(ctx, s.cfg.namespace, s.pvc1)
	if err != nil || claim.Phase != corev1.ClaimBound {
		t.Errorf("running: false: the disk's PVC %s: %+v, %v; want it kept and Bound", s.pvc1, claim, err)
	}
	t.Log("running: false: shut down over ACPI, no pod, 0 replicas, the PVC kept")
	upgrade("true")
	s.pod = s.waitVMReady(t, "vm1", s.pod.UID)
	s.ip = s.pod.Status.PodIP
	s.persisted(t, "running: false, then true")
}

// 5. a second VM in the release: its own pod IP, disk, hostname; the same base image.
func (s *scenario) secondVM(t *testing.T) {
	ctx := t.Context()
	values2 := s.valuesWithVM2(t)
	if _, err := s.helm.Run(ctx, "upgrade", s.cfg.release, s.cfg.chart, "-n", s.cfg.namespace, "-f", s.cfg.values, "-f", values2,
		"--set", "vms.vm1.memory=1536Mi"); err != nil {
		t.Fatal(err)
	}
	pod2 := s.waitVMReady(t, "vm2", "")
	ip2 := pod2.Status.PodIP
	if ip2 == s.ip {
		t.Errorf("vm2 has vm1's pod IP %s", s.ip)
	}
	if got, err := s.ssh.Line(ctx, ip2, "hostname"); got != vmName(pod2) {
		t.Errorf("vm2's hostname %q, want %q (%v)", got, vmName(pod2), err)
	}
	if _, err := s.ssh.Run(ctx, ip2, "test ! -e /var/tmp/persist"); err != nil {
		t.Errorf("vm2 sees vm1's file: the disks are shared (%v)", err)
	}
	if claims := kube.ClaimNames(pod2); len(claims) > 0 {
		s.pvc2 = claims[0]
	}
	if s.pvc1 == "" || s.pvc2 == "" || s.pvc1 == s.pvc2 {
		t.Errorf("PVCs: vm1 %q, vm2 %q", s.pvc1, s.pvc2)
	}
	if got := s.imageGets(t); got != s.gets {
		t.Errorf("vm2 downloaded the base image again (%d -> %d GETs)", s.gets, got)
	}
}

// valuesWithVM2 writes values holding vm2 with vm1's settings.
func (s *scenario) valuesWithVM2(t *testing.T) string {
	t.Helper()
	vm1, _ := s.vm1Settings(t)
	return writeValues(t, t.TempDir(), "values2", nil, map[string]any{"vm2": vm1})
}

// 6. helm test.
func (s *scenario) helmTest(t *testing.T) {
	out, err := s.helm.Run(t.Context(), "test", s.cfg.release, "-n", s.cfg.namespace, "--timeout", "180s")
	if err != nil {
		out += err.Error()
	}
	if werr := os.WriteFile(s.out("helm-test-%s.txt"), []byte(out), 0o644); werr != nil {
		t.Error(werr)
	}
	if err != nil {
		t.Fatalf("helm test (see %s): %v", s.out("helm-test-%s.txt"), err)
	}
}

// helm uninstall: the VM pods and the release's objects go, the PVCs stay.
func (s *scenario) uninstall(t *testing.T) {
	ctx := t.Context()
	if _, err := s.helm.Run(ctx, "uninstall", s.cfg.release, "-n", s.cfg.namespace, "--wait", "--timeout", "240s"); err != nil {
		t.Fatal(err)
	}
	pods := s.k.Client.CoreV1().Pods(s.cfg.namespace)
	if _, err := wait.For(ctx, "the VM pods gone", 120*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		var left []string
		for _, p := range list.Items {
			if p.Name != s.cfg.fileserver {
				left = append(left, p.Name)
			}
		}
		return len(left) == 0, strings.Join(left, " "), nil
	}); err != nil {
		t.Errorf("pods left after helm uninstall: %v", err)
	}
	for _, pvc := range []string{s.pvc1, s.pvc2} {
		if pvc == "" {
			continue
		}
		if _, err := s.k.Client.CoreV1().PersistentVolumeClaims(s.cfg.namespace).Get(ctx, pvc, metav1.GetOptions{}); err != nil {
			t.Errorf("helm uninstall removed PVC %s: %v", pvc, err)
		}
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + s.cfg.release}
	var left []string
	sts, err := s.k.Client.AppsV1().StatefulSets(s.cfg.namespace).List(ctx, sel)
	left = appendNames(t, left, "statefulset", err, func() []metav1.Object { return objects(sts.Items) })
	cms, err := s.k.Client.CoreV1().ConfigMaps(s.cfg.namespace).List(ctx, sel)
	left = appendNames(t, left, "configmap", err, func() []metav1.Object { return objects(cms.Items) })
	sas, err := s.k.Client.CoreV1().ServiceAccounts(s.cfg.namespace).List(ctx, sel)
	left = appendNames(t, left, "serviceaccount", err, func() []metav1.Object { return objects(sas.Items) })
	if len(left) > 0 {
		t.Errorf("helm uninstall left objects of the release: %s", strings.Join(left, " "))
	}
}

func objects[T any, P interface {
	*T
	metav1.Object
}](items []T) []metav1.Object {
	out := make([]metav1.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

func appendNames(t *testing.T, names []string, kind string, err error, items func() []metav1.Object) []string {
	t.Helper()
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("list %ss: %v", kind, err)
		return names
	}
	if err != nil {
		return names
	}
	for _, o := range items() {
		names = append(names, kind+"/"+o.GetName())
	}
	return names
}

// readBanner connects to addr (from d's namespace) and reads up to 12 bytes
// within timeout: what a server says first ("RFB 003.008\n" for VNC).
func readBanner(ctx context.Context, d netns.Dialer, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	b := make([]byte, 12)
	n, err := io.ReadFull(c, b)
	return string(b[:n]), err
}

// httpGet is curl -fsS: the body of a 2xx/3xx answer, else an error.
func httpGet(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode >= 400 {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
