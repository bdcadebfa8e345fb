package charttest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/berth-vm/berth/common/podmem"
)

var update = flag.Bool("update", false, "rewrite the golden snapshots in testdata/")

const (
	rel = "rel"
	ns  = "vms"
)

// oneVM is the smallest values a VM needs.
const oneVM = `
vms:
  vm1:
    image:
      source: http://images.example/debian-12.qcow2
`

// requireRefused renders values and fails unless the chart refuses them with
// an error naming msg.
func requireRefused(t *testing.T, c *chart.Chart, values, msg string) {
	t.Helper()
	vals, err := ParseValues(values)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Render(c, rel, ns, vals)
	if err == nil {
		t.Fatalf("accepted:%.300s", values)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error does not name %q: %.2000v", msg, err)
	}
}

func load(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func render(t *testing.T, values string) *Rendered {
	t.Helper()
	vals, err := ParseValues(values)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(load(t), rel, ns, vals)
	if err != nil {
		t.Fatalf("render: %v\nvalues:%s", err, values)
	}
	return r
}

func sts(t *testing.T, r *Rendered, vm string) *appsv1.StatefulSet {
	t.Helper()
	s, err := r.StatefulSet(rel + "-" + vm)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func allContainers(s *appsv1.StatefulSet) []corev1.Container {
	return podContainers(s.Spec.Template.Spec)
}

// podContainers is a pod's init containers (sidecars among them), then its containers.
func podContainers(p corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container(nil), p.InitContainers...), p.Containers...)
}

func container(t *testing.T, s *appsv1.StatefulSet, name string) corev1.Container {
	t.Helper()
	for _, c := range allContainers(s) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q in %s", name, s.Name)
	return corev1.Container{}
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

// imagesIn lists every "image" of containers and init containers in an object's YAML.
func imagesIn(t *testing.T, doc []byte) []string {
	t.Helper()
	var m any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if img, ok := e.(string); ok && k == "image" && (key == "containers" || key == "initContainers") {
					out = append(out, img)
				}
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		}
	}
	walk(m, "")
	return out
}

// Every example values file renders, and its rendering matches the golden snapshot; no image in
// it is third-party.
func TestExamplesGolden(t *testing.T) {
	files, err := Examples()
	if err != nil {
		t.Fatal(err)
	}
	c := load(t)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			vals, err := ReadValues(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Render(c, "example", "berth", vals)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(r.Objects) == 0 {
				t.Fatalf("%s rendered no objects", f)
			}
			assertGolden(t, filepath.Join("testdata", "golden", name+".yaml"), r.Snapshot(), "the rendering of "+f, "go test -update rewrites it after review")
			// Nothing third-party: every image, helm test's included, is one of images.*.
			hooks, err := r.HookObjects()
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range append(r.Objects, hooks...) {
				for _, img := range imagesIn(t, o.YAML) {
					if !strings.HasPrefix(img, "ghcr.io/berth-vm/") {
						t.Errorf("%s/%s runs %s, not one of the chart's images.*", o.Kind, o.Name, img)
					}
				}
			}
		})
	}
}

// assertGolden compares got with the golden file (rewritten with -update): what names what
// differs, how says how to accept a change.
func assertGolden(t *testing.T, golden string, got []byte, what, how string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from %s (%s):\n%s", what, golden, how, firstDiff(string(want), string(got)))
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return ""
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// helm lint --strict over every example, through the SDK (the same checks as the CLI).
func TestLintStrict(t *testing.T) {
	files, err := Examples()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		vals, err := ReadValues(f)
		if err != nil {
			t.Fatal(err)
		}
		lint := action.NewLint()
		lint.Strict = true
		lint.KubeVersion = mustKubeVersion(t)
		res := lint.Run([]string{ChartDir()}, vals)
		for _, m := range res.Messages {
			// INFO (icon is recommended) is not a failure under --strict; everything else is.
			if m.Severity > 1 {
				t.Errorf("%s: lint: %s", filepath.Base(f), m)
			}
		}
		for _, e := range res.Errors {
			t.Errorf("%s: lint error: %v", filepath.Base(f), e)
		}
	}
}

func TestNoVMsRendersOnlyNotes(t *testing.T) {
	r := render(t, "")
	if len(r.Objects) != 0 {
		t.Errorf("no VMs: rendered %v, want nothing", r.Kinds())
	}
	if !strings.Contains(r.Notes, "no VM") {
		t.Errorf("NOTES without VMs does not say so:\n%s", r.Notes)
	}
}

func TestObjectsPerVM(t *testing.T) {
	r := render(t, oneVM+`
  vm2:
    image:
      source: http://images.example/other.qcow2
    service:
      enabled: true
`)
	want := []string{
		"ConfigMap/rel-vm1-seed", "ConfigMap/rel-vm2-seed",
		"PersistentVolumeClaim/disk-rel-vm1-0", "PersistentVolumeClaim/disk-rel-vm2-0",
		"Service/rel-vm2",
		"ServiceAccount/rel-berth",
		"StatefulSet/rel-vm1", "StatefulSet/rel-vm2",
	}
	if got := r.Kinds(); !slices.Equal(got, want) {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}
	for _, vm := range []string{"vm1", "vm2"} {
		s := sts(t, r, vm)
		if *s.Spec.Replicas != 1 {
			t.Errorf("%s: replicas %d", vm, *s.Spec.Replicas)
		}
		if s.Spec.Template.Spec.ServiceAccountName != "rel-berth" {
			t.Errorf("%s: serviceAccountName %q", vm, s.Spec.Template.Spec.ServiceAccountName)
		}
		if a := s.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
			t.Errorf("%s: pod automountServiceAccountToken %v, want false", vm, a)
		}
		if env(container(t, s, "vm"))["VM_NAME"] != vm {
			t.Errorf("%s: VM_NAME %q", vm, env(container(t, s, "vm"))["VM_NAME"])
		}
	}
	var sa corev1.ServiceAccount
	if err := r.Find("ServiceAccount", "rel-berth", &sa); err != nil {
		t.Fatal(err)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("ServiceAccount: automountServiceAccountToken is not false")
	}
	var svc corev1.Service
	if err := r.Find("Service", "rel-vm2", &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector["berth-vm.github.io/vm"] != "vm2" || svc.Spec.Ports[0].Port != 22 {
		t.Errorf("Service: selector %v ports %v", svc.Spec.Selector, svc.Spec.Ports)
	}
}

func TestInitContainerOrder(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         []string
	}{
		{"hostPath cache", oneVM, []string{"net-setup", "image-cache", "disk-owner", "image-fetch", "seed-iso", "dnsmasq"}},
		{"emptyDir cache", oneVM + "    imageCache: {mode: emptyDir}\n", []string{"net-setup", "disk-owner", "image-fetch", "seed-iso", "dnsmasq"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sts(t, render(t, tc.values), "vm1")
			spec := s.Spec.Template.Spec
			if got := names(spec.InitContainers); !slices.Equal(got, tc.want) {
				t.Errorf("init containers %v, want %v", got, tc.want)
			}
			if got := names(spec.Containers); !slices.Equal(got, []string{"vm"}) {
				t.Errorf("containers %v, want [vm]", got)
			}
			for _, c := range spec.InitContainers {
				sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
				if sidecar != (c.Name == "dnsmasq") {
					t.Errorf("%s: native sidecar (restartPolicy Always) = %v", c.Name, sidecar)
				}
			}
			dns := container(t, s, "dnsmasq")
			if want := []string{"dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/run/berth/dnsmasq.conf"}; !slices.Equal(dns.Command, want) {
				t.Errorf("dnsmasq command %v, want %v", dns.Command, want)
			}
		})
	}
}

// Volumes and mounts exactly as docs/design.md's table: run (emptyDir) everywhere, images (hostPath or
// emptyDir) for image-fetch and vm, disk (the PVC) for image-fetch and vm.
func TestSharedVolumes(t *testing.T) {
	r := render(t, oneVM+`    class_name: fast-ssd
    diskSize: 20Gi
`)
	s := sts(t, r, "vm1")
	mounts := map[string]map[string]string{} // container -> volume -> path (its first mount; TestDiskMounts has them all)
	for _, c := range allContainers(s) {
		mounts[c.Name] = map[string]string{}
		for _, m := range c.VolumeMounts {
			if _, ok := mounts[c.Name][m.Name]; !ok {
				mounts[c.Name][m.Name] = m.MountPath
			}
		}
	}
	for _, c := range []string{"net-setup", "image-fetch", "seed-iso", "dnsmasq", "vm"} {
		if mounts[c]["run"] != "/run/berth" {
			t.Errorf("%s: run volume at %q, want /run/berth", c, mounts[c]["run"])
		}
		if env(container(t, s, c))["BERTH_RUN_DIR"] != "/run/berth" && c != "dnsmasq" {
			t.Errorf("%s: BERTH_RUN_DIR %q", c, env(container(t, s, c))["BERTH_RUN_DIR"])
		}
	}
	for _, c := range []string{"image-fetch", "vm", "image-cache"} {
		if mounts[c]["images"] != "/var/lib/berth/images" {
			t.Errorf("%s: images volume at %q", c, mounts[c]["images"])
		}
	}
	for _, c := range []string{"image-fetch", "vm"} {
		if mounts[c]["disk"] != "/var/lib/berth/disk" {
			t.Errorf("%s: disk volume at %q", c, mounts[c]["disk"])
		}
		e := env(container(t, s, c))
		if e["IMAGE_DIR"] != "/var/lib/berth/images" || e["DISK_DIR"] != "/var/lib/berth/disk" {
			t.Errorf("%s: IMAGE_DIR %q DISK_DIR %q", c, e["IMAGE_DIR"], e["DISK_DIR"])
		}
	}
	for _, c := range []string{"net-setup", "seed-iso", "dnsmasq"} {
		if _, ok := mounts[c]["disk"]; ok {
			t.Errorf("%s mounts the disk: it has no need to", c)
		}
	}
	for _, m := range container(t, s, "vm").VolumeMounts {
		if m.Name == "images" && !m.ReadOnly {
			t.Error("vm: images volume is writable; QEMU only reads the base image")
		}
	}
	vols := map[string]corev1.Volume{}
	for _, v := range s.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	if vols["run"].EmptyDir == nil {
		t.Error("run is not an emptyDir")
	}
	if hp := vols["images"].HostPath; hp == nil || hp.Path != "/var/lib/berth/images" {
		t.Errorf("images: %+v, want hostPath /var/lib/berth/images", vols["images"])
	}
	if c := vols["disk"].PersistentVolumeClaim; c == nil || c.ClaimName != "disk-rel-vm1-0" {
		t.Errorf("disk volume %+v, want the PVC disk-rel-vm1-0", vols["disk"])
	}
	if len(s.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("volumeClaimTemplates: %d, want none (a StatefulSet cannot change them: the chart makes the PVC)", len(s.Spec.VolumeClaimTemplates))
	}
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		t.Errorf("PVC retention %+v: without volumeClaimTemplates there is none (the PVC is kept by helm.sh/resource-policy)", p)
	}
	pvc, err := r.PVC("disk-rel-vm1-0")
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "fast-ssd" {
		t.Errorf("PVC class %v, want fast-ssd", pvc.Spec.StorageClassName)
	}
	if pvc.Annotations["helm.sh/resource-policy"] != "keep" || pvc.Annotations["berth-vm.github.io/disk-size"] != "20Gi" {
		t.Errorf("PVC annotations %v, want resource-policy keep and disk-size 20Gi", pvc.Annotations)
	}
	if env(container(t, s, "image-fetch"))["DISK_SIZE"] != "20Gi" || env(container(t, s, "vm"))["DISK_SIZE"] != "20Gi" {
		t.Error("DISK_SIZE is not the VM's diskSize")
	}

	// emptyDir cache: no hostPath anywhere.
	s = sts(t, render(t, oneVM+"    imageCache: {mode: emptyDir}\n"), "vm1")
	for _, v := range s.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("emptyDir cache mode: volume %s is a hostPath", v.Name)
		}
		if v.Name == "images" && v.EmptyDir == nil {
			t.Error("emptyDir cache mode: images is not an emptyDir")
		}
	}
}

// The environment docs/design.md names, per stage, from the values.
func TestEnvironment(t *testing.T) {
	r := render(t, `
vms:
  vm1:
    cpus: 3
    memory: 1536Mi
    image:
      source: http://images.example/debian-12.qcow2
      target: base.qcow2
      sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    vmIP: 10.9.0.2
    vmGW: 10.9.0.1
    seedFormat: nocloud
    sshAuthorizedKeys: ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"]
    readyTCPPort: 2222
    shutdownTimeout: 90
    logLevel: warn
    logFormat: json
    stages:
      imageFetch:
        logLevel: debug
        extraEnv: [{name: EXTRA, value: "yes"}]
`)
	s := sts(t, r, "vm1")
	want := map[string]map[string]string{
		"net-setup":   {"VM_IP": "10.9.0.2", "VM_GW": "10.9.0.1", "NO_VNC": "false", "TAP_UID": "107", "TAP_GID": "107", "LOG_LEVEL": "warn"},
		"image-fetch": {"IMG_SOURCE": "http://images.example/debian-12.qcow2", "IMG_TARGET": "base.qcow2", "IMG_SHA256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "LOG_LEVEL": "debug", "EXTRA": "yes"},
		"seed-iso":    {"USERDATA": "/userdata", "METADATA": "/metadata", "SEED_FORMAT": "nocloud", "SSH_AUTHORIZED_KEYS": "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two"},
		"vm":          {"VM_CPUS": "3", "VM_MEMORY": "1536Mi", "VM_IP": "10.9.0.2", "ACCEL": "auto", "NO_VNC": "false", "VNC_LISTEN": "127.0.0.1", "READY_TCP_PORT": "2222", "SHUTDOWN_TIMEOUT": "90"},
	}
	for c, vars := range want {
		e := env(container(t, s, c))
		for k, v := range vars {
			if e[k] != v {
				t.Errorf("%s: %s=%q, want %q", c, k, e[k], v)
			}
		}
		for _, k := range []string{"VM_NAME", "BERTH_RUN_DIR", "LOG_FORMAT", "LOG_LEVEL"} {
			if _, ok := e[k]; !ok {
				t.Errorf("%s: %s missing", c, k)
			}
		}
		if e["LOG_FORMAT"] != "json" {
			t.Errorf("%s: LOG_FORMAT %q", c, e["LOG_FORMAT"])
		}
	}
	// user-data and meta-data reach seed-iso as one-key ConfigMap mounts.
	cm, err := r.ConfigMap("rel-vm1-seed")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(cm.BinaryData["user-data"]), "#cloud-config") || cm.Data["meta-data"] != "{}" {
		t.Errorf("seed ConfigMap data %v, binaryData %q", cm.Data, cm.BinaryData)
	}
	for _, v := range s.Spec.Template.Spec.Volumes {
		if (v.Name == "userdata" || v.Name == "metadata") && (v.ConfigMap == nil || len(v.ConfigMap.Items) != 1) {
			t.Errorf("%s: not a one-key ConfigMap volume: %+v", v.Name, v.VolumeSource)
		}
	}
	// readyTCPPort 0 turns the port check off (a false-y value must win over the default 22).
	e := env(container(t, sts(t, render(t, oneVM+"    readyTCPPort: 0\n    noVNC: true\n"), "vm1"), "vm"))
	if _, ok := e["READY_TCP_PORT"]; ok {
		t.Errorf("readyTCPPort 0: READY_TCP_PORT=%q still set", e["READY_TCP_PORT"])
	}
	if e["NO_VNC"] != "true" {
		t.Errorf("noVNC true: NO_VNC=%q", e["NO_VNC"])
	}
}

func TestExistingConfigMaps(t *testing.T) {
	r := render(t, oneVM+"    userDataConfigMap: my-ud\n    metaDataConfigMap: my-md\n")
	if _, err := r.ConfigMap("rel-vm1-seed"); err == nil {
		t.Error("both ConfigMaps given, yet the chart rendered its own")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range sts(t, r, "vm1").Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	if vols["userdata"].ConfigMap.Name != "my-ud" || vols["metadata"].ConfigMap.Name != "my-md" {
		t.Errorf("volumes %+v %+v", vols["userdata"], vols["metadata"])
	}
}

func TestImages(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         map[string]string // container -> image
	}{
		{"defaults: appVersion tag", oneVM, map[string]string{
			"net-setup": "ghcr.io/berth-vm/net-setup:0.1.0", "image-fetch": "ghcr.io/berth-vm/image-fetch:0.1.0",
			"image-cache": "ghcr.io/berth-vm/image-fetch:0.1.0", "seed-iso": "ghcr.io/berth-vm/seed-iso:0.1.0",
			"dnsmasq": "ghcr.io/berth-vm/dnsmasq:0.1.0", "vm": "ghcr.io/berth-vm/vmm:0.1.0"}},
		{"global registry and tag", oneVM + `
images:
  vmm: {registry: registry.local:5000, tag: dev}
  dnsmasq: {registry: ""}
`, map[string]string{"vm": "registry.local:5000/berth-vm/vmm:dev", "dnsmasq": "berth-vm/dnsmasq:0.1.0", "net-setup": "ghcr.io/berth-vm/net-setup:0.1.0"}},
		{"digest wins over tag", oneVM + `
images:
  vmm: {tag: "9.9.9", digest: "sha256:` + strings.Repeat("ab", 32) + `"}
`, map[string]string{"vm": "ghcr.io/berth-vm/vmm@sha256:" + strings.Repeat("ab", 32)}},
		{"per VM over global", oneVM + `    images:
      vmm: {repository: me/vmm-debug, tag: "1.2"}
      seedIso: {digest: "sha256:` + strings.Repeat("cd", 32) + `"}
images:
  vmm: {tag: global}
`, map[string]string{"vm": "ghcr.io/me/vmm-debug:1.2", "seed-iso": "ghcr.io/berth-vm/seed-iso@sha256:" + strings.Repeat("cd", 32), "net-setup": "ghcr.io/berth-vm/net-setup:0.1.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sts(t, render(t, tc.values), "vm1")
			for c, img := range tc.want {
				if got := container(t, s, c).Image; got != img {
					t.Errorf("%s: image %q, want %q", c, got, img)
				}
			}
		})
	}
	s := sts(t, render(t, oneVM+"images:\n  vmm: {pullPolicy: Never}\n"), "vm1")
	if p := container(t, s, "vm").ImagePullPolicy; p != corev1.PullNever {
		t.Errorf("vm pullPolicy %q, want Never", p)
	}
	if p := container(t, s, "net-setup").ImagePullPolicy; p != corev1.PullIfNotPresent {
		t.Errorf("net-setup pullPolicy %q, want IfNotPresent", p)
	}
}

func caps(c corev1.Container) (add, drop []string) {
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		return nil, nil
	}
	for _, a := range c.SecurityContext.Capabilities.Add {
		add = append(add, string(a))
	}
	for _, d := range c.SecurityContext.Capabilities.Drop {
		drop = append(drop, string(d))
	}
	return add, drop
}

func isTrue(b *bool) bool { return b != nil && *b }

// Least privilege: only net-setup is privileged (by default, for ip_forward) and only it and
// dnsmasq run as root; everything else is non-root, drop ALL, read-only root, no escalation.
func TestSecurityContexts(t *testing.T) {
	s := sts(t, render(t, oneVM), "vm1")
	pod := s.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.FSGroup == nil || *pod.FSGroup != 107 || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", pod)
	}
	if len(pod.Sysctls) != 0 {
		t.Errorf("privileged ipForward mode sets pod sysctls %v", pod.Sysctls)
	}
	for _, c := range allContainers(s) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", c.Name)
			continue
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Errorf("%s: root filesystem writable", c.Name)
		}
		switch c.Name {
		case "net-setup":
			if !isTrue(sc.Privileged) {
				t.Error("net-setup: not privileged in the default ipForward mode")
			}
		case "dnsmasq", "image-cache", "disk-owner":
			add, drop := caps(c)
			if isTrue(sc.Privileged) || isTrue(sc.AllowPrivilegeEscalation) || !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("%s: %+v", c.Name, sc)
			}
			want := map[string][]string{"dnsmasq": {"NET_ADMIN", "NET_BIND_SERVICE", "SETUID", "SETGID"}, "image-cache": {"CHOWN", "FOWNER"}, "disk-owner": {"CHOWN", "FOWNER"}}[c.Name]
			if !slices.Equal(add, want) {
				t.Errorf("%s: capabilities %v, want %v", c.Name, add, want)
			}
		default: // image-fetch, seed-iso, vm
			add, drop := caps(c)
			if isTrue(sc.Privileged) || isTrue(sc.AllowPrivilegeEscalation) || sc.AllowPrivilegeEscalation == nil ||
				!isTrue(sc.RunAsNonRoot) || sc.RunAsUser == nil || *sc.RunAsUser != 107 || len(add) != 0 || !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("%s: not non-root/drop-ALL: %+v", c.Name, sc)
			}
		}
	}

	// ipForward: sysctl: a pod sysctl, and net-setup with capabilities, not privileged.
	s = sts(t, render(t, oneVM+"    ipForward: sysctl\n"), "vm1")
	pod = s.Spec.Template.Spec.SecurityContext
	if len(pod.Sysctls) != 1 || pod.Sysctls[0].Name != "net.ipv4.ip_forward" || pod.Sysctls[0].Value != "1" {
		t.Errorf("sysctl mode: pod sysctls %v", pod.Sysctls)
	}
	ns := container(t, s, "net-setup")
	if isTrue(ns.SecurityContext.Privileged) || isTrue(ns.SecurityContext.AllowPrivilegeEscalation) {
		t.Errorf("sysctl mode: net-setup still privileged: %+v", ns.SecurityContext)
	}
	if add, _ := caps(ns); !slices.Equal(add, []string{"NET_ADMIN", "NET_RAW", "MKNOD", "CHOWN", "FOWNER"}) {
		t.Errorf("sysctl mode: net-setup capabilities %v", add)
	}
	// tun and kvm from device plugins: the vm container requests the resources.
	s = sts(t, render(t, oneVM+"    ipForward: sysctl\n    tun: {mode: devicePlugin}\n    kvm: {resourceName: devices.kubevirt.io/kvm}\n"), "vm1")
	vm := container(t, s, "vm")
	for _, r := range []corev1.ResourceName{"devices.kubevirt.io/tun", "devices.kubevirt.io/kvm"} {
		if q := vm.Resources.Limits[r]; q.Value() != 1 {
			t.Errorf("vm: limit %s = %s, want 1", r, q.String())
		}
	}
	if isTrue(vm.SecurityContext.Privileged) {
		t.Error("device plugins: vm privileged")
	}
	// The privileged vm is an explicit opt-in only.
	vm = container(t, sts(t, render(t, oneVM+"    kvm: {privileged: true}\n"), "vm1"), "vm")
	if !isTrue(vm.SecurityContext.Privileged) {
		t.Error("kvm.privileged: vm not privileged")
	}
}

func TestGracePeriodProbesResources(t *testing.T) {
	s := sts(t, render(t, oneVM+"    shutdownTimeout: 100\n    memory: 2Gi\n    cpus: 4\n"), "vm1")
	spec := s.Spec.Template.Spec
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= 100 {
		t.Errorf("terminationGracePeriodSeconds %v, want > shutdownTimeout 100", g)
	}
	vm := container(t, s, "vm")
	if p := vm.ReadinessProbe; p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, []string{"vmm", "probe", "ready"}) {
		t.Errorf("readiness probe %+v", p)
	}
	if p := vm.LivenessProbe; p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, []string{"vmm", "probe", "live"}) {
		t.Errorf("liveness probe %+v", p)
	}
	// memory limit = guest memory + overhead (256Mi), request = limit; cpu request 4 x 100m, no cpu limit.
	if q := vm.Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("2304Mi")) != 0 {
		t.Errorf("memory limit %s, want 2304Mi", q.String())
	}
	if q := vm.Resources.Requests[corev1.ResourceMemory]; q.Cmp(resource.MustParse("2304Mi")) != 0 {
		t.Errorf("memory request %s, want 2304Mi", q.String())
	}
	if q := vm.Resources.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("400m")) != 0 {
		t.Errorf("cpu request %s, want 400m", q.String())
	}
	if _, ok := vm.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("cpu limit set by default")
	}
	// a plain number is bytes, as vmm reads VM_MEMORY: 1073741824 + 256Mi = 1280Mi.
	vm = container(t, sts(t, render(t, oneVM+"    memory: \"1073741824\"\n"), "vm1"), "vm")
	if q := vm.Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("1280Mi")) != 0 {
		t.Errorf("1073741824: memory limit %s, want 1280Mi", q.String())
	}
	// explicit resources win.
	vm = container(t, sts(t, render(t, oneVM+"    resources: {limits: {memory: 3Gi, cpu: \"2\"}}\n"), "vm1"), "vm")
	if q := vm.Resources.Limits[corev1.ResourceCPU]; q.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("explicit resources: cpu limit %s", q.String())
	}
}

func TestPodPlacementAndAnnotations(t *testing.T) {
	s := sts(t, render(t, oneVM+`    nodeSelector: {kvm: "yes"}
    tolerations: [{key: vms, operator: Exists, effect: NoSchedule}]
    affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
    podAnnotations: {team: infra}
    podLabels: {tier: vm}
`), "vm1")
	spec := s.Spec.Template.Spec
	if spec.NodeSelector["kvm"] != "yes" || len(spec.Tolerations) != 1 || spec.Affinity == nil || spec.Affinity.NodeAffinity == nil {
		t.Errorf("placement: %v %v %v", spec.NodeSelector, spec.Tolerations, spec.Affinity)
	}
	if s.Spec.Template.Annotations["team"] != "infra" || s.Spec.Template.Labels["tier"] != "vm" {
		t.Errorf("pod metadata %v %v", s.Spec.Template.Annotations, s.Spec.Template.Labels)
	}
	if s.Spec.Template.Annotations["checksum/seed"] == "" {
		t.Error("no checksum/seed annotation: a changed user-data would not restart the VM")
	}
	// Changing one VM's user-data changes only its own checksum.
	two := oneVM + "  vm2:\n    image: {source: http://x/y.qcow2}\n"
	a := render(t, two)
	b := render(t, two+"    userData: \"#cloud-config\\nhostname: other\\n\"\n")
	if sts(t, a, "vm1").Spec.Template.Annotations["checksum/seed"] != sts(t, b, "vm1").Spec.Template.Annotations["checksum/seed"] {
		t.Error("vm2's user-data changed vm1's checksum (vm1 would restart)")
	}
	if sts(t, a, "vm2").Spec.Template.Annotations["checksum/seed"] == sts(t, b, "vm2").Spec.Template.Annotations["checksum/seed"] {
		t.Error("vm2's user-data changed but its checksum did not")
	}
}

// metrics.enabled: METRICS_PORT in net-setup's env and vmm's (the same value: net-setup keeps the
// port from the VM, vmm serves on it), a containerPort named metrics beside vnc, the scrape
// annotations, the URL in NOTES; all absent by default, and a podAnnotations' prometheus.io/scrape wins.
func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		port         string // "": no metrics
		annotations  map[string]string
	}{
		{"off by default", oneVM, "", nil},
		{"on", oneVM + "    metrics: {enabled: true}\n", "19100", map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "19100", "prometheus.io/path": "/metrics"}},
		{"on, another port, no VNC", oneVM + "    noVNC: true\n    metrics: {enabled: true, port: 9100}\n", "9100", map[string]string{"prometheus.io/port": "9100"}},
		{"on, scrape annotation of the user's", oneVM + "    metrics: {enabled: true}\n    podAnnotations: {prometheus.io/scrape: \"false\"}\n", "19100", map[string]string{"prometheus.io/scrape": "false", "prometheus.io/port": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.values)
			s := sts(t, r, "vm1")
			vm := container(t, s, "vm")
			if got, want := strings.Contains(r.Notes, "  metrics:  http://<pod IP>:"+tc.port+"/metrics"), tc.port != ""; got != want {
				t.Errorf("NOTES tells the metrics URL: %v, want %v:\n%s", got, want, r.Notes)
			}
			var netSetup *corev1.Container
			for i := range s.Spec.Template.Spec.InitContainers {
				if s.Spec.Template.Spec.InitContainers[i].Name == "net-setup" {
					netSetup = &s.Spec.Template.Spec.InitContainers[i]
				}
			}
			if netSetup == nil {
				t.Fatal("no net-setup init container")
			}
			if got, want := env(*netSetup)["METRICS_PORT"], tc.port; got != want {
				t.Errorf("net-setup METRICS_PORT = %q, want %q", got, want)
			}
			if got, want := env(vm)["METRICS_PORT"], tc.port; got != want {
				t.Errorf("vmm METRICS_PORT = %q, want %q", got, want)
			}
			ports := map[string]int32{}
			for _, p := range vm.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if got := fmt.Sprint(ports["metrics"]); (tc.port == "" && got != "0") || (tc.port != "" && got != tc.port) {
				t.Errorf("containerPorts %v, want metrics %q", ports, tc.port)
			}
			ann := s.Spec.Template.Annotations
			if tc.annotations == nil {
				for k := range ann {
					if strings.HasPrefix(k, "prometheus.io/") {
						t.Errorf("annotation %s without metrics", k)
					}
				}
			}
			for k, want := range tc.annotations {
				if ann[k] != want {
					t.Errorf("annotation %s = %q, want %q (all: %v)", k, ann[k], want, ann)
				}
			}
		})
	}
}

func TestVNC(t *testing.T) {
	r := render(t, oneVM+"    vnc: {listen: 0.0.0.0, passwordSecret: vnc-pw}\n")
	vm := container(t, sts(t, r, "vm1"), "vm")
	e := env(vm)
	if e["VNC_LISTEN"] != "0.0.0.0" || e["VNC_PASSWORD_FILE"] != "/etc/berth/vnc/password" {
		t.Errorf("VNC env %v", e)
	}
	found := false
	for _, m := range vm.VolumeMounts {
		found = found || (m.Name == "vnc-password" && m.MountPath == "/etc/berth/vnc" && m.ReadOnly)
	}
	if !found {
		t.Error("VNC password Secret not mounted read-only at /etc/berth/vnc")
	}
}

// The serial console is output only by default; console.serial.interactive gives the vm container
// (and only it) stdin and a tty for kubectl attach, and NOTES says how to attach.
func TestSerialConsole(t *testing.T) {
	for _, tc := range []struct {
		values      string
		interactive bool
	}{
		{oneVM, false},
		{oneVM + "    console: {serial: {interactive: false}}\n", false},
		{oneVM + "    console: {serial: {interactive: true}}\n", true},
		{oneVM + "vmDefaults: {console: {serial: {interactive: true}}}\n", true},
	} {
		r := render(t, tc.values)
		for _, c := range allContainers(sts(t, r, "vm1")) {
			want := tc.interactive && c.Name == "vm"
			if c.Stdin != want || c.TTY != want || c.StdinOnce {
				t.Errorf("%q: container %s has stdin=%v tty=%v stdinOnce=%v, want stdin=tty=%v and stdinOnce false",
					tc.values, c.Name, c.Stdin, c.TTY, c.StdinOnce, want)
			}
		}
		if got := strings.Contains(r.Notes, "attach -it rel-vm1-0 -c vm"); got != tc.interactive {
			t.Errorf("%q: NOTES mentions kubectl attach: %v, want %v:\n%s", tc.values, got, tc.interactive, r.Notes)
		}
	}
}

// The web console is off by default; console.web.enabled adds the novnc native sidecar after dnsmasq:
// websockify on the pod's loopback only, bridged to QEMU's VNC, the Origin guard, non-root with
// nothing added, no ports and no volumes; NOTES prints the port-forward and the page.
func TestWebConsole(t *testing.T) {
	for _, tc := range []struct {
		name, values     string
		enabled          bool
		target, origins  string
		image, passNotes string
	}{
		{"default", oneVM, false, "", "", "", ""},
		{"off", oneVM + "    console: {web: {enabled: false}}\n", false, "", "", "", ""},
		{"on", oneVM + "    console: {web: {enabled: true}}\n", true, "127.0.0.1:5900",
			"http://localhost:6080 http://127.0.0.1:6080", "ghcr.io/berth-vm/novnc:0.1.0", ""},
		{"on for every VM, own image and origins", oneVM + `vmDefaults:
  console: {web: {enabled: true, origins: ["http://localhost:8080"]}}
images:
  novnc: {registry: registry.local, tag: dev, pullPolicy: Never}
`, true, "127.0.0.1:5900", "http://localhost:8080", "registry.local/berth-vm/novnc:dev", ""},
		{"VNC on 0.0.0.0 with a password", oneVM + "    vnc: {listen: 0.0.0.0, passwordSecret: vnc-pw}\n    console: {web: {enabled: true}}\n",
			true, "127.0.0.1:5900", "http://localhost:6080 http://127.0.0.1:6080", "ghcr.io/berth-vm/novnc:0.1.0", "Secret vnc-pw"},
		{"VNC on another loopback address", oneVM + "    vnc: {listen: 127.0.0.2}\n    console: {web: {enabled: true}}\n",
			true, "127.0.0.2:5900", "http://localhost:6080 http://127.0.0.1:6080", "ghcr.io/berth-vm/novnc:0.1.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.values)
			s := sts(t, r, "vm1")
			init := names(s.Spec.Template.Spec.InitContainers)
			if has := slices.Contains(init, "novnc"); has != tc.enabled {
				t.Fatalf("init containers %v: novnc present %v, want %v", init, has, tc.enabled)
			}
			notes := strings.Contains(r.Notes, "kubectl -n vms port-forward pod/rel-vm1-0 6080\n") &&
				strings.Contains(r.Notes, "http://localhost:6080/vnc.html")
			if notes != tc.enabled {
				t.Errorf("NOTES has the port-forward and the page: %v, want %v:\n%s", notes, tc.enabled, r.Notes)
			}
			if !tc.enabled {
				return
			}
			if init[len(init)-1] != "novnc" || init[len(init)-2] != "dnsmasq" {
				t.Errorf("init containers %v: want novnc right after dnsmasq", init)
			}
			c := container(t, s, "novnc")
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Error("novnc is not a native sidecar (restartPolicy Always)")
			}
			want := []string{"/usr/bin/python3.11", "-m", "websockify", "--web", "/usr/share/novnc",
				"--auth-plugin", "ExpectOrigin", "--auth-source", tc.origins, "127.0.0.1:6080", tc.target}
			if !slices.Equal(c.Command, want) {
				t.Errorf("novnc command\n%q\nwant\n%q", c.Command, want)
			}
			if c.Image != tc.image {
				t.Errorf("novnc image %q, want %q", c.Image, tc.image)
			}
			if len(c.Ports) != 0 || len(c.VolumeMounts) != 0 || len(c.Env) != 0 {
				t.Errorf("novnc has ports %v, mounts %v, env %v: want none", c.Ports, c.VolumeMounts, c.Env)
			}
			sc := c.SecurityContext
			if add, drop := caps(c); sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 || !isTrue(sc.RunAsNonRoot) ||
				isTrue(sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				!isTrue(sc.ReadOnlyRootFilesystem) || len(add) != 0 || !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("novnc securityContext %+v", sc)
			}
			if q := c.Resources.Limits[corev1.ResourceMemory]; q.IsZero() {
				t.Error("novnc has no memory limit")
			}
			if got := strings.Contains(r.Notes, tc.passNotes); tc.passNotes != "" && !got {
				t.Errorf("NOTES does not say noVNC asks for the password of %q:\n%s", tc.passNotes, r.Notes)
			}
			// the vm container is unchanged: VNC stays where it was, nothing new on the pod IP
			if e := env(container(t, s, "vm")); e["NO_VNC"] != "false" {
				t.Errorf("vm env NO_VNC=%q", e["NO_VNC"])
			}
		})
	}
}

func TestHelmTestHook(t *testing.T) {
	r := render(t, oneVM)
	objs, err := r.HookObjects()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind+"/"+o.Name)
	}
	if !slices.Equal(kinds, []string{"Service/rel-vm1-test", "Pod/rel-vm1-test"}) {
		t.Fatalf("test hooks %v: want the Service before the Pod", kinds)
	}
	// The test runs vmm probe banner in the VM's own vmm image (a per-VM override included):
	// nothing third-party, nothing the VM's node lacks.
	for _, tc := range []struct{ name, values string }{
		{"default", oneVM},
		{"the VM's own vmm image", oneVM + "    images: {vmm: {tag: v9, pullPolicy: Always}}\n"},
	} {
		r := render(t, tc.values)
		objs, err := r.HookObjects()
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(objs[1].YAML, &pod); err != nil {
			t.Fatal(err)
		}
		vm := container(t, sts(t, r, "vm1"), "vm")
		got := pod.Spec.Containers[0]
		if got.Image != vm.Image || got.ImagePullPolicy != vm.ImagePullPolicy {
			t.Errorf("%s: the test pod runs %s (%s), the VM %s (%s)", tc.name, got.Image, got.ImagePullPolicy, vm.Image, vm.ImagePullPolicy)
		}
		if want := []string{"vmm", "probe", "banner", "-within", "60s", "$(REL_VM1_TEST_SERVICE_HOST):22"}; !slices.Equal(got.Command, want) {
			t.Errorf("%s: test command %q, want %q (the kubelet expands the Service's variable)", tc.name, got.Command, want)
		}
	}
	if r := render(t, oneVM+"tests: {enabled: false}\n"); len(r.Hooks) != 0 {
		t.Errorf("tests.enabled false: %d hooks", len(r.Hooks))
	}
}

func TestNotes(t *testing.T) {
	n := render(t, oneVM).Notes
	for _, want := range []string{"rel-vm1-0", "ssh ", "logs -f rel-vm1-0 -c vm", "port-forward pod/rel-vm1-0 5900:5900", "helm test rel"} {
		if !strings.Contains(n, want) {
			t.Errorf("NOTES lacks %q:\n%s", want, n)
		}
	}
}

// Values the chart must refuse, each with a message that names the problem.
func TestRefusedValues(t *testing.T) {
	c := load(t)
	for _, tc := range []struct {
		name, values, msg string
	}{
		{"typo'd VM key", oneVM + "    cpuz: 2\n", "cpuz"},
		{"typo'd top-level key", oneVM + "image: {}\n", "image"},
		{"typo'd nested key", oneVM + "    imageCache: {mod: emptyDir}\n", "mod"},
		{"negative cpus", oneVM + "    cpus: -1\n", "cpus"},
		{"zero cpus", oneVM + "    cpus: 0\n", "cpus"},
		{"cpus as text", oneVM + "    cpus: two\n", "cpus"},
		{"bad IP", oneVM + "    vmIP: 192.168.254.300\n", "vmIP"},
		{"IP with prefix", oneVM + "    vmGW: 192.168.254.1/30\n", "vmGW"},
		{"memory without unit", oneVM + "    memory: \"1024\"\n", "memory"},
		{"bad digest", oneVM + "images:\n  vmm: {digest: sha256:xyz}\n", "digest"},
		{"bad sha256", "vms:\n  vm1:\n    image: {source: http://x/y, sha256: abc}\n", "sha256"},
		{"target with a path", "vms:\n  vm1:\n    image: {source: http://x/y, target: ../etc/passwd}\n", "target"},
		{"ftp source", "vms:\n  vm1:\n    image: {source: ftp://x/y}\n", "source"},
		{"VM name not a DNS label", "vms:\n  VM_1:\n    image: {source: http://x/y}\n", "VM_1"},
		{"unknown accel", oneVM + "    accel: hvf\n", "accel"},
		{"unknown image cache mode", oneVM + "    imageCache: {mode: nfs}\n", "mode"},
		{"root vmUID", oneVM + "    vmUID: 0\n", "vmUID"},
		{"unknown pullPolicy", oneVM + "images:\n  vmm: {pullPolicy: Sometimes}\n", "pullPolicy"},
		{"missing image source", "vms:\n  vm1:\n    cpus: 2\n", "image.source is required"},
		{"public VNC without password", oneVM + "    vnc: {listen: 0.0.0.0}\n", "passwordSecret"},
		{"same IP and gateway", oneVM + "    vmIP: 10.0.0.1\n    vmGW: 10.0.0.1\n", "vmIP and vmGW"},
		{"web console without VNC", oneVM + "    noVNC: true\n    console: {web: {enabled: true}}\n", "noVNC is true"},
		{"web console, VNC on a pod address", oneVM + "    vnc: {listen: 10.1.2.3, passwordSecret: pw}\n    console: {web: {enabled: true}}\n", "vnc.listen is 10.1.2.3"},
		{"web console origin with a path", oneVM + "    console: {web: {enabled: true, origins: [\"http://localhost:6080/vnc.html\"]}}\n", "origins"},
		{"web console without origins", oneVM + "    console: {web: {enabled: true, origins: []}}\n", "origins"},
		{"typo'd web console key", oneVM + "    console: {web: {enable: true}}\n", "enable"},
		{"metrics on VNC's port", oneVM + "    metrics: {enabled: true, port: 5900}\n", "port"},
		{"metrics on a privileged port", oneVM + "    metrics: {enabled: true, port: 80}\n", "port"},
		{"metrics port as text", oneVM + "    metrics: {enabled: true, port: \"19100\"}\n", "port"},
		{"typo'd metrics key", oneVM + "    metrics: {enable: true}\n", "enable"},
		{"readiness on the metrics port", oneVM + "    readyTCPPort: 19100\n    metrics: {enabled: true}\n", "is metrics.port"},
		{"web console as a string", oneVM + "    console: {web: {enabled: \"yes\"}}\n", "enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefused(t, c, tc.values, tc.msg)
		})
	}
}

func mustKubeVersion(t *testing.T) *chartutil.KubeVersion {
	t.Helper()
	kv, err := KubeVersion()
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestMemoryOverheadCoversTCG: the chart's default memory limit holds what the vm container needs
// beyond guest RAM under TCG at the largest tb-size (common/podmem, measured by ci/bench/memory.sh),
// whatever accel says (auto may fall back to TCG), so vmm's cgroup-based choice is the largest and a
// guest that fills its RAM is not OOM-killed; and with accel kvm too (it changes nothing here).
func TestMemoryOverheadCoversTCG(t *testing.T) {
	for _, accel := range []string{"", "    accel: tcg\n", "    accel: kvm\n"} {
		for _, mem := range []string{"256Mi", "1Gi", "8Gi"} {
			vm := container(t, sts(t, render(t, oneVM+accel+"    memory: "+mem+"\n"), "vm1"), "vm")
			limit := vm.Resources.Limits[corev1.ResourceMemory]
			guest := resource.MustParse(mem)
			beyond := uint64(limit.Value() - guest.Value())
			if tb := podmem.PlanTB(uint64(limit.Value()), uint64(guest.Value())); tb.Short || tb.MiB != podmem.MaxTBSize {
				t.Errorf("%smemory %s: limit %s leaves %d MiB beyond guest RAM; vmm would choose %+v, want the largest tb-size %d MiB (needs %d MiB)",
					accel, mem, limit.String(), beyond>>20, tb, podmem.MaxTBSize, podmem.TCGOverhead(podmem.MaxTBSize)>>20)
			}
		}
	}
}
