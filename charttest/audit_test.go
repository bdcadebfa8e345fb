package charttest

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The least-privilege audit (docs/security.md): for each notable values variant, every pod the
// chart renders (the VM's StatefulSet and the helm test pod) is listed container by container —
// user, privileged, privilege escalation, capabilities, read-only root, writable mounts, hostPath
// volumes — and compared with the checked-in expectation testdata/security/audit.md (go test
// -update rewrites it; review the diff: a new container or a new privilege shows up there).
// The invariants of docs/security.md are then asserted on the same rows.

// auditVariants are the values variants the audit renders, in the order of the expectation.
var auditVariants = []struct {
	name, doc, values string
	vmRoot            bool // the vm container runs as root (an explicit opt-in)
}{
	{"default", "the defaults: ipForward privileged, tun runDir, hostPath image cache, VNC on 127.0.0.1", oneVM, false},
	{"ipforward-sysctl", "ipForward: sysctl (net-setup with capabilities instead of privileged)", oneVM + "    ipForward: sysctl\n", false},
	{"tun-deviceplugin", "tun.mode: devicePlugin", oneVM + "    tun: {mode: devicePlugin}\n", false},
	{"kvm-privileged", "kvm.privileged: true (opt-in: the vm container privileged, as root)", oneVM + "    kvm: {privileged: true}\n", true},
	{"tun-privileged", "tun.mode: privileged (opt-in: the vm container privileged, as root)", oneVM + "    tun: {mode: privileged}\n", true},
	{"vnc-public", "vnc.listen: 0.0.0.0 with vnc.passwordSecret", oneVM + "    vnc: {listen: 0.0.0.0, passwordSecret: vnc-pw}\n", false},
	{"web-console", "console.web.enabled: the novnc sidecar (noVNC on the pod's loopback)", oneVM + "    console: {web: {enabled: true}}\n", false},
	{"data-disks", "data disks: a Filesystem one (a file in Berth's directory on its volume) and a Block one (the volume's device node)",
		oneVM + "    disks: [{name: data, size: 1Gi}, {name: db, size: 1Gi, volumeMode: Block}]\n", false},
	{"smallest", "the smallest footprint: ipForward sysctl, tun and kvm from device plugins, emptyDir image cache",
		oneVM + "    ipForward: sysctl\n    tun: {mode: devicePlugin}\n    kvm: {resourceName: devices.kubevirt.io/kvm}\n    imageCache: {mode: emptyDir}\n", false},
}

// auditPod is one rendered pod (template): where it came from and its spec.
type auditPod struct {
	Name   string
	Spec   corev1.PodSpec
	Claims []string // a StatefulSet's volumeClaimTemplates: volumes of the pod too
}

// auditPods returns every pod spec in a rendering: StatefulSets' templates and hook Pods.
func auditPods(t *testing.T, r *Rendered) []auditPod {
	t.Helper()
	var pods []auditPod
	for _, o := range r.Objects {
		switch o.Kind {
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err := yaml.UnmarshalStrict(o.YAML, &s); err != nil {
				t.Fatal(err)
			}
			var claims []string
			for _, c := range s.Spec.VolumeClaimTemplates {
				claims = append(claims, c.Name)
			}
			pods = append(pods, auditPod{"StatefulSet/" + o.Name, s.Spec.Template.Spec, claims})
		case "Pod", "Deployment", "DaemonSet", "Job", "ReplicaSet", "CronJob":
			t.Fatalf("the audit does not know how to read %s/%s: add it", o.Kind, o.Name)
		}
	}
	hooks, err := r.HookObjects()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range hooks {
		if o.Kind != "Pod" {
			continue
		}
		var p corev1.Pod
		if err := yaml.UnmarshalStrict(o.YAML, &p); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, auditPod{"Pod/" + o.Name + " (helm test)", p.Spec, nil})
	}
	return pods
}

// auditRow is one container's privileges.
type auditRow struct {
	Container  string
	Kind       string // init, sidecar, main
	User       string // runAsUser ("image" when unset), "nonroot" when runAsNonRoot
	Privileged bool
	Escalation string // allowPrivilegeEscalation: true, false, unset
	CapsAdd    []string
	CapsDrop   []string
	ReadOnly   bool // readOnlyRootFilesystem
	Writable   []string
	HostPaths  []string
	Devices    []string // extended resources requested (device plugins), Block volumes' device nodes
}

func boolp(b *bool) string {
	if b == nil {
		return "unset"
	}
	return strconv.FormatBool(*b)
}

func auditRows(ap auditPod) []auditRow {
	p := ap.Spec
	vols := map[string]corev1.Volume{}
	for _, c := range ap.Claims {
		vols[c] = corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}}
	}
	for _, v := range p.Volumes {
		vols[v.Name] = v
	}
	var rows []auditRow
	add := func(c corev1.Container, kind string) {
		r := auditRow{Container: c.Name, Kind: kind, User: "image", Escalation: "unset"}
		uid, nonRoot := (*int64)(nil), (*bool)(nil)
		if ps := p.SecurityContext; ps != nil {
			uid, nonRoot = ps.RunAsUser, ps.RunAsNonRoot
		}
		if sc := c.SecurityContext; sc != nil {
			if sc.RunAsUser != nil {
				uid = sc.RunAsUser
			}
			if sc.RunAsNonRoot != nil {
				nonRoot = sc.RunAsNonRoot
			}
			r.Privileged = isTrue(sc.Privileged)
			r.Escalation = boolp(sc.AllowPrivilegeEscalation)
			r.ReadOnly = isTrue(sc.ReadOnlyRootFilesystem)
		}
		r.CapsAdd, r.CapsDrop = caps(c)
		if uid != nil {
			r.User = strconv.FormatInt(*uid, 10)
		}
		if nonRoot != nil && *nonRoot {
			r.User += " nonroot"
		}
		for _, m := range c.VolumeMounts {
			v := vols[m.Name]
			if v.HostPath != nil {
				mode := "rw"
				if m.ReadOnly {
					mode = "ro"
				}
				r.HostPaths = append(r.HostPaths, v.HostPath.Path+" "+mode)
			}
			if m.ReadOnly || v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.DownwardAPI != nil {
				continue // ConfigMap, Secret, projected volumes are read-only whatever the mount says
			}
			r.Writable = append(r.Writable, fmt.Sprintf("%s (%s)", m.MountPath, volumeKind(v)))
		}
		for name := range c.Resources.Limits {
			if strings.Contains(string(name), "/") {
				r.Devices = append(r.Devices, string(name))
			}
		}
		for _, d := range c.VolumeDevices { // a Block PVC's device node, read-write
			r.Devices = append(r.Devices, fmt.Sprintf("%s (%s)", d.DevicePath, volumeKind(vols[d.Name])))
		}
		sort.Strings(r.Devices)
		rows = append(rows, r)
	}
	for _, c := range p.InitContainers {
		kind := "init"
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			kind = "sidecar"
		}
		add(c, kind)
	}
	for _, c := range p.Containers {
		add(c, "main")
	}
	return rows
}

func volumeKind(v corev1.Volume) string {
	switch {
	case v.EmptyDir != nil:
		return v.Name + ": emptyDir"
	case v.HostPath != nil:
		return v.Name + ": hostPath"
	case v.PersistentVolumeClaim != nil:
		return v.Name + ": PVC"
	default:
		return v.Name + ": ?"
	}
}

func list(s []string) string {
	if len(s) == 0 {
		return "–"
	}
	return strings.Join(s, ", ")
}

// auditPodLine is the pod-level part of the audit: what every container shares.
func auditPodLine(p corev1.PodSpec) string {
	var f []string
	f = append(f, "automountServiceAccountToken: "+boolp(p.AutomountServiceAccountToken))
	f = append(f, fmt.Sprintf("hostNetwork: %v, hostPID: %v, hostIPC: %v", p.HostNetwork, p.HostPID, p.HostIPC))
	if sc := p.SecurityContext; sc != nil {
		if sc.FSGroup != nil {
			f = append(f, "fsGroup: "+strconv.FormatInt(*sc.FSGroup, 10))
		}
		if sc.SeccompProfile != nil {
			f = append(f, "seccomp: "+string(sc.SeccompProfile.Type))
		}
		for _, s := range sc.Sysctls {
			f = append(f, "sysctl "+s.Name+"="+s.Value)
		}
	}
	return strings.Join(f, "; ")
}

// auditTable renders one variant's expectation as markdown.
func auditTable(t *testing.T, name, doc string, r *Rendered) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s.\n", name, doc)
	for _, p := range auditPods(t, r) {
		fmt.Fprintf(&b, "\n%s: %s\n\n", p.Name, auditPodLine(p.Spec))
		b.WriteString("| container | kind | user | privileged | escalation | caps add | caps drop | read-only root | writable mounts | hostPath | devices |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range auditRows(p) {
			fmt.Fprintf(&b, "| %s | %s | %s | %v | %s | %s | %s | %v | %s | %s | %s |\n", row.Container, row.Kind, row.User,
				row.Privileged, row.Escalation, list(row.CapsAdd), list(row.CapsDrop), row.ReadOnly, list(row.Writable),
				list(row.HostPaths), list(row.Devices))
		}
	}
	return b.String()
}

// TestSecurityAudit: the rendered privileges equal the checked-in expectation, and the
// invariants of docs/security.md hold in every variant.
func TestSecurityAudit(t *testing.T) {
	var doc strings.Builder
	doc.WriteString("# Berth's rendered privileges (charttest TestSecurityAudit; docs/security.md explains each row)\n\n" +
		"Generated by `cd charttest && GOWORK=off go test -run TestSecurityAudit -update`; do not edit by hand.\n\n")
	for _, v := range auditVariants {
		r := render(t, v.values)
		doc.WriteString(auditTable(t, v.name, v.doc, r))
		doc.WriteString("\n")
		t.Run(v.name, func(t *testing.T) { checkInvariants(t, r, v.vmRoot) })
	}
	assertGolden(t, filepath.Join("testdata", "security", "audit.md"), []byte(doc.String()), "the privilege audit",
		"review, explain the change in docs/security.md, then -update")
}

// checkInvariants asserts docs/security.md's invariants on one rendering.
func checkInvariants(t *testing.T, r *Rendered, vmRoot bool) {
	t.Helper()
	// The release's ServiceAccount mounts no token either.
	for _, o := range r.Objects {
		if o.Kind == "ServiceAccount" {
			var sa corev1.ServiceAccount
			if err := yaml.UnmarshalStrict(o.YAML, &sa); err != nil {
				t.Fatal(err)
			}
			if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount/%s: automountServiceAccountToken not false", o.Name)
			}
		}
	}
	pods := auditPods(t, r)
	if len(pods) < 2 {
		t.Fatalf("audit found %d pods, want the VM's and the helm test's", len(pods))
	}
	for _, p := range pods {
		s := p.Spec
		if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false: a token would be mounted", p.Name)
		}
		if s.HostNetwork || s.HostPID || s.HostIPC {
			t.Errorf("%s: shares a host namespace", p.Name)
		}
		for _, v := range s.Volumes {
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.ServiceAccountToken != nil {
						t.Errorf("%s: volume %s projects a service account token", p.Name, v.Name)
					}
				}
			}
			if v.HostPath != nil && v.Name != "images" {
				t.Errorf("%s: hostPath volume %s (%s): only the image cache may use the node's filesystem", p.Name, v.Name, v.HostPath.Path)
			}
		}
		for _, c := range podContainers(s) {
			e := env(c)
			if l, ok := e["VNC_LISTEN"]; ok && !strings.HasPrefix(l, "127.") {
				if e["VNC_PASSWORD_FILE"] == "" {
					t.Errorf("%s/%s: VNC_LISTEN=%s without VNC_PASSWORD_FILE: VNC on the pod IP without a password", p.Name, c.Name, l)
				}
			}
		}
		for _, row := range auditRows(p) {
			who := p.Name + "/" + row.Container
			if slices.Contains(row.CapsAdd, "NET_ADMIN") && row.Container != "net-setup" && row.Container != "dnsmasq" {
				t.Errorf("%s adds NET_ADMIN: only net-setup (and the dnsmasq sidecar, for DHCP) may", who)
			}
			if slices.Contains(row.CapsAdd, "SYS_ADMIN") || slices.Contains(row.CapsAdd, "ALL") {
				t.Errorf("%s adds %v", who, row.CapsAdd)
			}
			if !row.ReadOnly {
				t.Errorf("%s: root filesystem writable", who)
			}
			if row.Privileged {
				if !(row.Container == "net-setup" || (row.Container == "vm" && vmRoot)) {
					t.Errorf("%s is privileged: only net-setup (ipForward: privileged) and the opt-in vm may be", who)
				}
				continue
			}
			if row.Escalation != "false" {
				t.Errorf("%s: allowPrivilegeEscalation %s, want false", who, row.Escalation)
			}
			if !slices.Equal(row.CapsDrop, []string{"ALL"}) {
				t.Errorf("%s: drops %v, want ALL", who, row.CapsDrop)
			}
			if row.Container == "vm" {
				if strings.HasPrefix(row.User, "0") || row.User == "image" || !strings.HasSuffix(row.User, " nonroot") {
					t.Errorf("%s: QEMU runs as %q, want a non-root uid with runAsNonRoot", who, row.User)
				}
				if len(row.CapsAdd) != 0 {
					t.Errorf("%s: QEMU gets capabilities %v", who, row.CapsAdd)
				}
			}
		}
	}
}

// VNC on the pod IP needs a password Secret: the chart refuses 0.0.0.0 (or any non-loopback
// address) without one, whatever else is set.
func TestAuditPublicVNCNeedsPassword(t *testing.T) {
	c := load(t)
	for _, listen := range []string{"0.0.0.0", "10.1.2.3"} {
		vals, err := ParseValues(oneVM + "    vnc: {listen: " + listen + "}\n")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Render(c, rel, ns, vals); err == nil || !strings.Contains(err.Error(), "passwordSecret") {
			t.Errorf("vnc.listen %s without passwordSecret: %v, want a refusal naming passwordSecret", listen, err)
		}
	}
}

// Every container's failure reason reaches `kubectl get pod -o jsonpath=...terminated.message`
// and `kubectl describe`: the stages write /dev/termination-log (the default path), and whatever
// dies without writing it (dnsmasq, the image-cache install, a crash) falls back to its last log
// lines (ci/chaos/bad-input.sh reads these messages on a real cluster).
func TestTerminationMessages(t *testing.T) {
	for _, v := range auditVariants {
		for _, p := range auditPods(t, render(t, v.values)) {
			if !strings.HasPrefix(p.Name, "StatefulSet/") {
				continue
			}
			for _, c := range podContainers(p.Spec) {
				if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
					t.Errorf("%s %s/%s: terminationMessagePolicy %q, want FallbackToLogsOnError", v.name, p.Name, c.Name, c.TerminationMessagePolicy)
				}
				if c.TerminationMessagePath != "" && c.TerminationMessagePath != "/dev/termination-log" {
					t.Errorf("%s %s/%s: terminationMessagePath %q: the stages write /dev/termination-log", v.name, p.Name, c.Name, c.TerminationMessagePath)
				}
			}
		}
	}
}
