package charttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berth-vm/berth/common/disks"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Values a user can get wrong (docs/chart.md, "What each value gets"): each is either refused
// with its key in the message, or rendered into objects that pass Kubernetes' validation
// (Validate) and that every stage accepts with exactly the env its container gets.

// hostileRefused: values refused, by the schema or by a template check, naming the key.
var hostileRefused = []struct {
	name, values, msg string
}{
	// image-fetch's download policy
	{"fetch.attempts 0", oneVM + "      fetch: {attempts: 0}\n", "attempts"},
	{"fetch.minRate 64K", oneVM + "      fetch: {minRate: 64K}\n", "minRate"},
	{"fetch.deadline without a unit", oneVM + "      fetch: {deadline: \"6\"}\n", "deadline"},
	{"fetch: an unknown key", oneVM + "      fetch: {retries: 3}\n", "retries"},
	// the node: imageCache.hostPath
	{"hostPath /etc", oneVM + "    imageCache: {hostPath: /etc}\n", "hostPath"},
	{"hostPath /", oneVM + "    imageCache: {hostPath: /}\n", "hostPath"},
	{"hostPath /var/lib", oneVM + "    imageCache: {hostPath: /var/lib}\n", "hostPath"},
	{"hostPath /var", oneVM + "    imageCache: {hostPath: /var}\n", "hostPath"},
	{"hostPath /usr/local/berth", oneVM + "    imageCache: {hostPath: /usr/local/berth}\n", "hostPath"},
	{"hostPath under the kubelet", oneVM + "    imageCache: {hostPath: /var/lib/kubelet/pods}\n", "hostPath"},
	{"hostPath /etc/kubernetes", oneVM + "    imageCache: {hostPath: /etc/kubernetes}\n", "hostPath"},
	{"hostPath /tmp/x", oneVM + "    imageCache: {hostPath: /tmp/x}\n", "hostPath"},
	{"hostPath /home", oneVM + "    imageCache: {hostPath: /home}\n", "hostPath"},
	{"hostPath with ..", oneVM + "    imageCache: {hostPath: /var/lib/berth/../../../etc}\n", "hostPath"},
	{"hostPath with .", oneVM + "    imageCache: {hostPath: /var/lib/berth/./images}\n", "hostPath"},
	{"hostPath relative", oneVM + "    imageCache: {hostPath: var/lib/berth}\n", "hostPath"},
	{"hostPath trailing /", oneVM + "    imageCache: {hostPath: /var/lib/berth/}\n", "hostPath"},
	{"hostPath //", oneVM + "    imageCache: {hostPath: /var/lib//berth}\n", "hostPath"},
	{"hostPath with a space", oneVM + "    imageCache: {hostPath: \"/srv/my images\"}\n", "hostPath"},
	// one VM must never become another
	{"Service and test Service of two VMs", "vms:\n  web: {image: {source: http://x/y}, service: {enabled: true}}\n  web-test: {image: {source: http://x/y}, service: {enabled: true}}\n",
		"vms.web and vms.web-test would both render Service rel-web-test"},
	{"podLabels with the VM label", oneVM + "    podLabels: {berth-vm.github.io/vm: other}\n", "podLabels.berth-vm.github.io/vm"},
	{"podLabels with the instance label", oneVM + "    podLabels: {app.kubernetes.io/instance: other}\n", "podLabels.app.kubernetes.io/instance"},
	{"podLabels value with a space", oneVM + "    podLabels: {team: \"vm team\"}\n", "podLabels/team"},
	{"podLabels value too long", oneVM + "    podLabels: {team: " + strings.Repeat("a", 64) + "}\n", "podLabels/team"},
	{"podLabels key with a space", oneVM + "    podLabels: {\"my team\": a}\n", "vms.vm1.podLabels key \"my team\""},
	{"podLabels value a number", oneVM + "    podLabels: {team: 1}\n", "podLabels/team"},
	{"nodeSelector value with a space", oneVM + "    nodeSelector: {zone: \"eu west\"}\n", "nodeSelector/zone"},
	{"podAnnotations key with a space", oneVM + "    podAnnotations: {\"a b\": c}\n", "vms.vm1.podAnnotations key \"a b\""},
	{"nodeSelector key with a slash too many", oneVM + "    nodeSelector: {a/b/c: d}\n", "vms.vm1.nodeSelector key \"a/b/c\""},
	{"service annotation key empty prefix", oneVM + "    service: {enabled: true, annotations: {/x: z}}\n", "vms.vm1.service.annotations key \"/x\""},
	// units
	{"memory 8G", oneVM + "    memory: 8G\n", "memory"},
	{"memory 1000M", oneVM + "    memory: 1000M\n", "memory"},
	{"memory 1.5Gi", oneVM + "    memory: 1.5Gi\n", "memory"},
	{"memory as a number", oneVM + "    memory: 1024\n", "memory"},
	{"memory under 128Mi", oneVM + "    memory: 64Mi\n", "vms.vm1.memory 64Mi"},
	{"memory not whole MiB", oneVM + "    memory: 1536Ki\n", "vms.vm1.memory 1536Ki"},
	{"memory bytes under 128Mi", oneVM + "    memory: \"1024\"\n", "vms.vm1.memory 1024"},
	{"memory over 4Ti", oneVM + "    memory: 5Ti\n", "vms.vm1.memory 5Ti"},
	{"diskSize 10G", oneVM + "    diskSize: 10G\n", "diskSize"},
	{"diskSize 1T", oneVM + "    diskSize: 1T\n", "diskSize"},
	{"diskSize bytes not a multiple of 512", oneVM + "    diskSize: \"1000\"\n", "vms.vm1.diskSize 1000"},
	{"memoryOverhead 256M", oneVM + "    memoryOverhead: 256M\n", "memoryOverhead"},
	// refused by name, not by a YAML parser
	{"userData over 1 MiB", oneVM + "    userData: \"" + strings.Repeat("a", 1<<20) + "\"\n", "vms.vm1.userData (with metaData) is 1048578 bytes, over the 1 MiB (1048576 bytes)"},
	{"metaData an integer Helm rounds", oneVM + "    metaData: {instance-id: 12345678901234567890}\n", "metaData/instance-id"},
	{"metaData a nested integer Helm rounds", oneVM + "    metaData: {a: {b: [-12345678901234567890]}}\n", "metaData/a/b/0"},
	{"sshAuthorizedKeys with a control character", oneVM + "    sshAuthorizedKeys: [\"ssh-ed25519 AAAA\\x01 me\"]\n", "sshAuthorizedKeys/0"},
	{"sshAuthorizedKeys not a key", oneVM + "    sshAuthorizedKeys: [\"me@laptop\"]\n", "sshAuthorizedKeys/0"},
	{"sshAuthorizedKeys with a newline", oneVM + "    sshAuthorizedKeys: [\"ssh-ed25519 AAAA\\nssh-rsa B\"]\n", "sshAuthorizedKeys/0"},
	{"image.source with a space", "vms:\n  vm1: {image: {source: \"http://x/a b.qcow2\"}}\n", "image/source"},
	{"image.source with a control character", "vms:\n  vm1: {image: {source: \"http://x/a\\x7fb.qcow2\"}}\n", "image/source"},
	{"tolerations: unknown operator", oneVM + "    tolerations: [{key: a, operator: Maybe}]\n", "tolerations/0/operator"},
	{"tolerations: unknown key", oneVM + "    tolerations: [{key: a, effekt: NoSchedule}]\n", "tolerations/0"},
	{"tolerations: not a list", oneVM + "    tolerations: {key: a}\n", "tolerations"},
	{"tolerations: tolerationSeconds a string", oneVM + "    tolerations: [{key: a, operator: Exists, effect: NoExecute, tolerationSeconds: soon}]\n", "tolerations/0/tolerationSeconds"},
	{"affinity: unknown key", oneVM + "    affinity: {nodeAffinity: {required: {}}}\n", "affinity/nodeAffinity"},
	{"affinity: expression without operator", oneVM + "    affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone}]}]}}}\n", "matchExpressions/0"},
	{"affinity: term without topologyKey", oneVM + "    affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {}}]}}\n", "requiredDuringSchedulingIgnoredDuringExecution/0"},
	{"resources: not a quantity", oneVM + "    resources: {limits: {memory: lots}}\n", "resources/limits/memory"},
	{"resources: unknown key", oneVM + "    resources: {limit: {memory: 1Gi}}\n", "resources"},
	{"extraEnv: value and valueFrom", oneVM + "    stages: {vmm: {extraEnv: [{name: A, value: b, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}}\n", "extraEnv/0"},
	{"extraEnv: valueFrom without a source", oneVM + "    stages: {vmm: {extraEnv: [{name: A, valueFrom: {}}]}}\n", "extraEnv/0/valueFrom"},
	{"extraEnv: valueFrom with two sources", oneVM + "    stages: {vmm: {extraEnv: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}, secretKeyRef: {name: s, key: k}}}]}}\n", "extraEnv/0/valueFrom"},
	{"extraEnv: unknown source", oneVM + "    stages: {vmm: {extraEnv: [{name: A, valueFrom: {magicRef: {}}}]}}\n", "extraEnv/0/valueFrom"},
	{"extraEnv: fieldRef without fieldPath", oneVM + "    stages: {seedIso: {extraEnv: [{name: A, valueFrom: {fieldRef: {}}}]}}\n", "extraEnv/0/valueFrom/fieldRef"},
	{"extraEnv: value a number", oneVM + "    stages: {netSetup: {extraEnv: [{name: A, value: 1}]}}\n", "extraEnv/0/value"},
	{"service: nodePort on ClusterIP", oneVM + "    service: {enabled: true, ports: [{name: ssh, port: 22, nodePort: 30022}]}\n", "vms.vm1.service.ports ssh: nodePort"},
	{"service: port name too long", oneVM + "    service: {enabled: true, ports: [{name: ssh-for-the-guest, port: 22}]}\n", "ports/0/name"},
	{"service: port name with --", oneVM + "    service: {enabled: true, ports: [{name: a--b, port: 22}]}\n", "ports/0/name"},
	{"service: port name without a letter", oneVM + "    service: {enabled: true, ports: [{name: \"22\", port: 22}]}\n", "vms.vm1.service.ports name \"22\" needs a letter"},
	{"service: a port twice", oneVM + "    service: {enabled: true, ports: [{name: a, port: 22}, {name: b, port: 22}]}\n", "vms.vm1.service.ports lists port 22/TCP twice"},
	{"service: a name twice", oneVM + "    service: {enabled: true, ports: [{name: a, port: 22}, {name: a, port: 23}]}\n", "vms.vm1.service.ports lists name a twice"},
	{"podAnnotations: the seed checksum", oneVM + "    podAnnotations: {checksum/seed: x}\n", "vms.vm1.podAnnotations.checksum/seed"},
	{"tests.image, no longer read", oneVM + "tests: {image: busybox}\n", "tests.image is no longer read: helm test runs `vmm probe banner` in each VM's own vmm image"},
	{"tests.pullPolicy, no longer read", oneVM + "tests: {pullPolicy: Always}\n", "tests.pullPolicy is no longer read"},
	{"readyTCPPort 5900 with VNC", oneVM + "    readyTCPPort: 5900\n", "vms.vm1.readyTCPPort 5900"},
	// ISOs (cdrom, extraCdroms) and the blank disk (more in cdrom_test.go)
	{"neither image.source nor cdrom.source", "vms:\n  vm1: {image: {source: \"\"}}\n", "vms.vm1.image.source is required"},
	{"a blank disk with image.sha256", "vms:\n  vm1: {image: {source: \"\", sha256: \"" + strings.Repeat("ab", 32) + "\"}, cdrom: {source: /i/a.iso}}\n", "vms.vm1.image.sha256 is set, but image.source is empty"},
	{"cdrom.source ftp://", "vms:\n  vm1: {image: {source: \"\"}, cdrom: {source: \"ftp://x/a.iso\"}}\n", "cdrom/source"},
	{"cdrom.source relative", "vms:\n  vm1: {image: {source: \"\"}, cdrom: {source: isos/a.iso}}\n", "cdrom/source"},
	{"cdrom.source with credentials", "vms:\n  vm1: {image: {source: \"\"}, cdrom: {source: \"https://u:p@x/a.iso\"}}\n", "cdrom/source"},
	{"extraCdroms: a path with ..", oneVM + "    extraCdroms: [{source: /isos/../a.iso}]\n", "extraCdroms/0/source"},
	{"extraCdroms: no source", oneVM + "    extraCdroms: [{sha256: \"\"}]\n", "extraCdroms/0"},
	{"extraCdroms: an unknown key", oneVM + "    extraCdroms: [{source: /i/a.iso, readonly: true}]\n", "readonly"},
	{"two ISOs of one file name", oneVM + "    extraCdroms: [{source: /i/a.iso}, {source: \"https://x/a.iso\"}]\n", "would both be a.iso in the image cache"},
	{"an ISO URL without a file name", oneVM + "    extraCdroms: [{source: \"https://x/\"}]\n", "vms.vm1.extraCdroms[0].source's base name"},
}

func TestHostileValuesRefused(t *testing.T) {
	c := load(t)
	for _, tc := range hostileRefused {
		t.Run(tc.name, func(t *testing.T) {
			requireRefused(t, c, tc.values, tc.msg)
		})
	}
}

// hostileAccepted: values that look dangerous but are fine; each renders, and check (if set)
// asserts what it rendered to.
type hostileCase struct {
	name, release, values string
	check                 func(t *testing.T, r *Rendered)
}

const longRelease = "berth-production-cluster-eu-west"

var hostileAccepted = []hostileCase{
	{"names that truncate alike", longRelease, "vms:\n  database-replica-0001: {image: {source: http://x/y}, service: {enabled: true}}\n  database-replica-0002: {image: {source: http://x/y}, service: {enabled: true}}\n",
		func(t *testing.T, r *Rendered) {
			n := map[string]int{}
			for _, o := range r.Objects {
				n[o.Kind]++
				if o.Kind == "StatefulSet" && len(o.Name) > 52 {
					t.Errorf("StatefulSet %s: %d characters", o.Name, len(o.Name))
				}
			}
			if n["StatefulSet"] != 2 || n["ConfigMap"] != 2 || n["Service"] != 2 {
				t.Errorf("objects %v, want 2 StatefulSets, ConfigMaps and Services", r.Kinds())
			}
			hooks, err := r.HookObjects()
			if err != nil {
				t.Fatal(err)
			}
			if len(hooks) != 4 {
				t.Errorf("%d test objects, want 4", len(hooks))
			}
		}},
	{"names that fit keep their names", "rel", "vms:\n  " + strings.Repeat("a", 40) + ": {image: {source: http://x/y}}\n",
		func(t *testing.T, r *Rendered) {
			if _, err := r.StatefulSet("rel-" + strings.Repeat("a", 40)); err != nil {
				t.Error(err) // 44 characters: the name earlier versions gave
			}
		}},
	{"a download policy", "rel", "vms:\n  v: {image: {source: http://x/y, fetch: {attempts: 3, backoff: 500ms, maxBackoff: 1m, stallTimeout: 30s, minRate: 64Ki, rateWindow: 2m, deadline: 2h30m}}}\n",
		func(t *testing.T, r *Rendered) {
			s, err := r.StatefulSet("rel-v")
			if err != nil {
				t.Fatal(err)
			}
			env := kubeletEnv(container(t, s, "image-fetch"))
			for k, want := range map[string]string{"IMG_FETCH_ATTEMPTS": "3", "IMG_FETCH_BACKOFF": "500ms", "IMG_FETCH_MIN_RATE": "64Ki", "IMG_FETCH_DEADLINE": "2h30m"} {
				if env[k] != want {
					t.Errorf("%s = %q, want %q", k, env[k], want)
				}
			}
		}},
	{"numeric VM name", "rel", "vms:\n  \"123\": {image: {source: http://x/y}, service: {enabled: true}}\n", nil},
	{"web and web-test without their own Services", "rel", "vms:\n  web: {image: {source: http://x/y}}\n  web-test: {image: {source: http://x/y}}\n", nil},
	{"user-data that is no YAML", "rel", oneVM + "    userData: \"  indented first line\\n\\x01\\x1b[31m{{ .Values }}\\n---\\nkey: [\\n\\t\\u00e9\\u0000\"\n",
		func(t *testing.T, r *Rendered) {
			cm, err := r.ConfigMap("rel-vm1-seed")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(cm.BinaryData["user-data"]), "  indented first line\n\x01\x1b[31m{{ .Values }}\n---\nkey: [\n\t\u00e9\x00"; got != want {
				t.Errorf("user-data %q, want %q", got, want)
			}
		}},
	{"userData just under 1 MiB", "rel", oneVM + "    userData: \"" + strings.Repeat("a", 1<<20-2) + "\"\n", nil},
	{"metaData that must stay exact", "rel", oneVM + "    metaData: {instance-id: \"12345678901234567890\", num: 9007199254740991, list: [1, 2.5, true, null, {x: \"\\u0001\"}]}\n",
		func(t *testing.T, r *Rendered) {
			cm, err := r.ConfigMap("rel-vm1-seed")
			if err != nil {
				t.Fatal(err)
			}
			var md map[string]any
			d := json.NewDecoder(strings.NewReader(cm.Data["meta-data"]))
			d.UseNumber()
			if err := d.Decode(&md); err != nil {
				t.Fatalf("meta-data %q: %v", cm.Data["meta-data"], err)
			}
			if md["instance-id"] != "12345678901234567890" || md["num"] != json.Number("9007199254740991") {
				t.Errorf("meta-data %q", cm.Data["meta-data"])
			}
		}},
	{"$ in user strings", "rel", "vms:\n  vm1:\n    image: {source: \"https://example.org/$(VM_NAME)/$$x/$HOME.qcow2\"}\n    sshAuthorizedKeys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJOCeRr60EIPJdl6XVTRvTHALT5bPWrfYlNG7c2htjqp $(VM_NAME)@laptop\"]\n",
		func(t *testing.T, r *Rendered) {
			s := sts(t, r, "vm1")
			e := kubeletEnv(container(t, s, "image-fetch"))
			if got := e["IMG_SOURCE"]; got != "https://example.org/$(VM_NAME)/$$x/$HOME.qcow2" {
				t.Errorf("IMG_SOURCE as the kubelet passes it: %q", got)
			}
			if got := kubeletEnv(container(t, s, "seed-iso"))["SSH_AUTHORIZED_KEYS"]; got != "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJOCeRr60EIPJdl6XVTRvTHALT5bPWrfYlNG7c2htjqp $(VM_NAME)@laptop" {
				t.Errorf("SSH_AUTHORIZED_KEYS as the kubelet passes it: %q", got)
			}
		}},
	{"nodePort rendered", "rel", oneVM + "    service: {enabled: true, type: NodePort, ports: [{name: ssh, port: 22, nodePort: 30022}]}\n",
		func(t *testing.T, r *Rendered) {
			var s corev1.Service
			if err := r.Find("Service", "rel-vm1", &s); err != nil {
				t.Fatal(err)
			}
			if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].NodePort != 30022 {
				t.Errorf("ports %+v, want nodePort 30022", s.Spec.Ports)
			}
		}},
	{"a Service with two ports of one number, two protocols", "rel", oneVM + "    service: {enabled: true, ports: [{name: dns, port: 53}, {name: dns-udp, port: 53, protocol: UDP}]}\n", nil},
	{"object names YAML reads as numbers", "rel", oneVM + "    userDataConfigMap: \"123\"\n    metaDataConfigMap: \"1e3\"\n    vnc: {listen: 0.0.0.0, passwordSecret: \"0x10\"}\nimagePullSecrets: [\"007\"]\nimages:\n  vmm: {registry: \"\", repository: \"123\", tag: \"456\"}\n",
		func(t *testing.T, r *Rendered) {
			s := sts(t, r, "vm1")
			p := s.Spec.Template.Spec
			if len(p.ImagePullSecrets) != 1 || p.ImagePullSecrets[0].Name != "007" || container(t, s, "vm").Image != "123:456" {
				t.Errorf("pull secrets %v, vm image %q", p.ImagePullSecrets, container(t, s, "vm").Image)
			}
		}},
	{"readyTCPPort 5900 without VNC", "rel", oneVM + "    readyTCPPort: 5900\n    noVNC: true\n", nil},
	{"sizes in bytes and Gi", "rel", oneVM + "    memory: 8Gi\n    diskSize: \"10737418240\"\n    memoryOverhead: \"0\"\n",
		func(t *testing.T, r *Rendered) {
			s := sts(t, r, "vm1")
			vm := container(t, s, "vm")
			if q := vm.Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("8Gi")) != 0 {
				t.Errorf("memory limit %s, want 8Gi (VM_MEMORY %s)", q.String(), env(vm)["VM_MEMORY"])
			}
			pvc, err := r.PVC("disk-rel-vm1-0")
			if err != nil {
				t.Fatal(err)
			}
			// the same request as diskSize 10Gi's (see TestVolumeRequest)
			if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "11274Mi" || pvc.Annotations["berth-vm.github.io/disk-size"] != "10737418240" {
				t.Errorf("PVC request %s, disk-size %q; want 11274Mi, 10737418240", q.String(), pvc.Annotations["berth-vm.github.io/disk-size"])
			}
		}},
	{"data disks on Filesystem volumes", "rel", oneVM + "    disks: [{name: data, size: 1Gi}, {name: scratch, size: 512Mi, format: raw, bus: virtio-scsi, cache: writeback, discard: ignore}]\n",
		func(t *testing.T, r *Rendered) {
			// every stage that reads DATA_DISKS gets it (TestStagesAgree runs them on it)
			s := sts(t, r, "vm1")
			for _, c := range []string{"image-fetch", "vm"} {
				if !strings.Contains(env(container(t, s, c))["DATA_DISKS"], `"name":"scratch"`) {
					t.Errorf("%s: DATA_DISKS %q", c, env(container(t, s, c))["DATA_DISKS"])
				}
			}
		}},
	{"labels, selector and annotations", "rel", oneVM + "    podLabels: {team: infra, example.com/tier: a.b_c-1, empty: \"\"}\n    nodeSelector: {kubernetes.io/arch: amd64}\n    podAnnotations: {example.com/note: \"any text: {x}\"}\n", nil},
	{"Kubernetes pass-through values", "rel", oneVM + `    tolerations: [{key: vms, operator: Exists, effect: NoSchedule}, {key: a, operator: Equal, value: b, effect: NoExecute, tolerationSeconds: 30}]
    affinity:
      nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}
      podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 10, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: x}}}}]}
    resources: {requests: {cpu: 500m, memory: 2Gi}, limits: {memory: 3Gi}}
    stages:
      vmm: {extraEnv: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, {name: A, value: "b"}]}
`, nil},
	{"image cache on a custom path", "rel", oneVM + "    imageCache: {hostPath: /srv/berth/cache}\n",
		func(t *testing.T, r *Rendered) {
			s := sts(t, r, "vm1")
			for _, v := range s.Spec.Template.Spec.Volumes {
				if v.Name == "images" && (v.HostPath == nil || v.HostPath.Path != "/srv/berth/cache") {
					t.Errorf("images volume %+v", v.VolumeSource)
				}
			}
			for _, c := range allContainers(s) {
				for _, m := range c.VolumeMounts {
					if m.Name == "images" && m.SubPath != "berth-images" {
						t.Errorf("%s mounts the images volume with subPath %q, want berth-images", c.Name, m.SubPath)
					}
				}
			}
		}},
	{"image cache emptyDir", "rel", oneVM + "    imageCache: {mode: emptyDir}\n", nil},
	{"a blank disk, an installer and a driver ISO", "rel", "vms:\n  vm1:\n    image: {source: \"\"}\n    diskSize: 20Gi\n    cdrom: {source: \"https://isos.example/debian-12.iso\", sha256: \"" + strings.Repeat("AB", 32) + "\"}\n    extraCdroms: [{source: \"http://isos.example/virtio-win.iso\", target: virtio-win-0.1.iso}]\n",
		func(t *testing.T, r *Rendered) {
			s := sts(t, r, "vm1")
			want := `[{"sha256":"` + strings.Repeat("AB", 32) + `","source":"https://isos.example/debian-12.iso"},{"source":"http://isos.example/virtio-win.iso","target":"virtio-win-0.1.iso"}]`
			for _, c := range []string{"image-fetch", "vm"} {
				if got := kubeletEnv(container(t, s, c))["CDROMS"]; got != want {
					t.Errorf("%s: CDROMS %s, want %s", c, got, want)
				}
			}
			if e := kubeletEnv(container(t, s, "image-fetch")); e["IMG_SOURCE"] != "" || e["DISK_BLANK"] != "true" || e["DISK_SIZE"] != "20Gi" {
				t.Errorf("image-fetch: IMG_SOURCE %q, DISK_BLANK %q, DISK_SIZE %q", e["IMG_SOURCE"], e["DISK_BLANK"], e["DISK_SIZE"])
			}
		}},
	{"an ISO URL with $, quotes, & and <>", "rel", oneVM + "    extraCdroms: [{source: 'https://isos.example/$(VM_NAME)/a.iso?x=\"1\"&y=<2>&z=$$', target: a.iso}]\n",
		func(t *testing.T, r *Rendered) {
			l := parseCDROMs(t, kubeletEnv(container(t, sts(t, r, "vm1"), "image-fetch"))["CDROMS"])
			if len(l) != 1 || l[0].Source != `https://isos.example/$(VM_NAME)/a.iso?x="1"&y=<2>&z=$$` {
				t.Errorf("CDROMS as the kubelet passes it: %+v", l)
			}
		}},
}

func renderCase(t *testing.T, tc hostileCase) *Rendered {
	t.Helper()
	vals, err := ParseValues(tc.values)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(load(t), tc.release, ns, vals)
	if err != nil {
		t.Fatalf("refused: %.2000v", err)
	}
	return r
}

// TestHostileValuesRendered: every accepted value renders objects that pass Validate.
func TestHostileValuesRendered(t *testing.T) {
	for _, tc := range hostileAccepted {
		t.Run(tc.name, func(t *testing.T) {
			r := renderCase(t, tc)
			hooks, err := r.HookObjects()
			if err != nil {
				t.Fatal(err)
			}
			all := append(append([]Object(nil), r.Objects...), hooks...)
			if err := Validate(all); err != nil {
				t.Errorf("rendered objects the API would refuse:\n%v", err)
			}
			if err := APIValidate(all, ns); err != nil {
				t.Errorf("rendered objects the API server's validation refuses:\n%v", err)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// The examples render valid objects too.
func TestExamplesValidate(t *testing.T) {
	files, err := Examples()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		vals, err := ReadValues(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Render(load(t), "example", "berth", vals)
		if err != nil {
			t.Fatal(err)
		}
		hooks, err := r.HookObjects()
		if err != nil {
			t.Fatal(err)
		}
		all := append(append([]Object(nil), r.Objects...), hooks...)
		if err := Validate(all); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
		if err := APIValidate(all, "berth"); err != nil {
			t.Errorf("%s: the API server's validation: %v", filepath.Base(f), err)
		}
	}
}

// Validate itself refuses what the chart used to render (so TestHostileValuesRendered can fail).
func TestValidateRefuses(t *testing.T) {
	for _, tc := range []struct{ name, yaml, msg string }{
		{"integer label", "kind: ConfigMap\nmetadata: {name: a, labels: {berth-vm.github.io/vm: 123}}\n", "decode"},
		{"label value with a space", "kind: ConfigMap\nmetadata: {name: a, labels: {team: vm team}}\n", "team"},
		{"duplicate label key", "kind: ConfigMap\nmetadata:\n  name: a\n  labels:\n    x: a\n    x: b\n", "decode"},
		{"long StatefulSet", "kind: StatefulSet\nmetadata: {name: " + strings.Repeat("a", 53) + "}\nspec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}}}\n", "controller-revision-hash"},
		{"nodePort on ClusterIP", "kind: Service\nmetadata: {name: a}\nspec: {ports: [{name: x, port: 1, nodePort: 30000}]}\n", "nodePort"},
		{"ConfigMap over 1 MiB", "kind: ConfigMap\nmetadata: {name: a}\ndata: {a: " + strings.Repeat("a", 1<<20+1) + "}\n", "1 MiB"},
		{"env value and valueFrom", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, env: [{name: A, value: b, valueFrom: {fieldRef: {fieldPath: x}}}]}]}\n", "both"},
		{"unknown field", "kind: Service\nmetadata: {name: a}\nspec: {portz: []}\n", "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := SplitManifest(tc.yaml)
			if err == nil {
				err = Validate(objs)
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Validate: %v, want an error naming %q", err, tc.msg)
			}
		})
	}
	// and so does the API server's validation, on what Validate does not check
	for _, tc := range []struct{ name, yaml, msg string }{
		{"toleration operator", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i}], tolerations: [{key: a, operator: Maybe}]}\n", "operator"},
		{"nodePort on ClusterIP", "kind: Service\nmetadata: {name: a}\nspec: {ports: [{name: x, port: 1, nodePort: 30000}]}\n", "nodePort"},
		{"env value and valueFrom", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, env: [{name: A, value: b, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]}\n", "valueFrom"},
		{"StatefulSet selector not matching", "kind: StatefulSet\nmetadata: {name: a}\nspec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: c}}, spec: {containers: [{name: c, image: i}]}}}\n", "selector"},
	} {
		t.Run("api "+tc.name, func(t *testing.T) {
			objs, err := SplitManifest(tc.yaml)
			if err == nil {
				err = APIValidate(objs, "ns")
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("APIValidate: %v, want an error naming %q", err, tc.msg)
			}
		})
	}
	twice := "kind: ConfigMap\nmetadata: {name: a}\n---\nkind: ConfigMap\nmetadata: {name: a}\n"
	objs, _ := SplitManifest(twice)
	if err := Validate(objs); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("two objects of one name: %v", err)
	}
}

func TestKubeletExpand(t *testing.T) {
	def := map[string]string{"VM_NAME": "vm1"}
	for in, want := range map[string]string{
		"a$(VM_NAME)b":  "avm1b",
		"a$$(VM_NAME)b": "a$(VM_NAME)b",
		"$(OTHER)":      "$(OTHER)",
		"$$$$":          "$$",
		"$HOME":         "$HOME",
		"$":             "$",
		"$(unclosed":    "$(unclosed",
	} {
		if got := KubeletExpand(in, def); got != want {
			t.Errorf("KubeletExpand(%q) = %q, want %q", in, got, want)
		}
	}
}

// kubeletEnv is a container's env as the process sees it (values expanded as the kubelet does;
// valueFrom entries left out).
func kubeletEnv(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			m[e.Name] = KubeletExpand(e.Value, m)
		}
	}
	return m
}

// stageOf maps a container to the stage binary it runs (bin/ from `make build`).
var stageOf = map[string]string{"net-setup": "net-setup", "image-fetch": "image-fetch", "seed-iso": "seed-iso", "vm": "vmm"}

func binDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(ChartDir(), "..", "bin")
	for _, b := range stageOf {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			if os.Getenv("BERTH_REQUIRE_BIN") == "1" {
				t.Fatalf("%v: run make build (BERTH_REQUIRE_BIN=1)", err)
			}
			t.Skipf("%v: run make build first", err)
		}
	}
	return d
}

// stageDryRun runs a stage's --dry-run with exactly the env its container gets, the pod's mount
// points moved under dir (with the files the other stages would have made), and returns its
// exit code and output.
// plainTempDir is a temp dir whose path any stage takes: t.TempDir() holds the
// test's name, whose commas and spaces the stages refuse in a path.
func plainTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "berth-stage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func stageDryRun(t *testing.T, bin string, s *appsv1.StatefulSet, cm *corev1.ConfigMap, c corev1.Container, dir string) (int, string) {
	t.Helper()
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = filepath.Join(dir, m.MountPath)
		if err := os.MkdirAll(mounts[m.MountPath], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// a path in a mount, or a directory that holds mounts (DATA_DISK_DIR), is moved under dir
	move := func(v string) string {
		for mp, d := range mounts {
			if v == mp || strings.HasPrefix(v, mp+"/") {
				return d + strings.TrimPrefix(v, mp)
			}
			if len(v) > 1 && strings.HasPrefix(v, "/") && strings.HasPrefix(mp, v+"/") {
				return filepath.Join(dir, v)
			}
		}
		return v
	}
	e := kubeletEnv(c)
	var envv []string
	for k, v := range e {
		envv = append(envv, k+"="+move(v))
	}
	vmName := e["VM_NAME"]
	// what image-fetch would have made: a base in the image cache and the pet
	// overlay on it (vmm checks both before it prints its plan)
	if disk, images := move("/var/lib/berth/disk"), move("/var/lib/berth/images"); disk != "/var/lib/berth/disk" && images != "/var/lib/berth/images" {
		base := filepath.Join(images, "base.qcow2")
		for _, args := range [][]string{
			{"create", "-q", "-f", "qcow2", base, "64M"},
			{"create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", filepath.Join(disk, vmName+".qcow2")},
		} {
			if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %v: %v: %s", args, err, out)
			}
		}
	}
	// the Filesystem data disks image-fetch would have made, in their volumes (vmm checks them)
	if dataDir := move(e["DATA_DISK_DIR"]); c.Name == "vm" && dataDir != e["DATA_DISK_DIR"] {
		list, err := disks.Parse(e[disks.Var])
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.Block() {
				continue // a device node the harness cannot make: the cases have Filesystem disks only
			}
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", d.Format, d.Path(dataDir), strconv.FormatUint(d.Bytes, 10)).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img create %s: %v: %s", d.Path(dataDir), err, out)
			}
		}
	}
	// the ISOs image-fetch would have put into the image cache (empty, as the seed below: the
	// dry runs do not read them)
	if images := move("/var/lib/berth/images"); c.Name == "vm" && images != "/var/lib/berth/images" && e["CDROMS"] != "" {
		for _, i := range parseCDROMs(t, e["CDROMS"]) {
			if err := os.WriteFile(filepath.Join(images, i.file(t)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// what the earlier stages and the ConfigMaps would have put there
	files := map[string]string{
		"/run/berth/seed.iso":     "",
		"/etc/berth/vnc/password": "secret",
	}
	if cm != nil {
		files["/userdata/user-data"] = string(cm.BinaryData["user-data"])
		files["/metadata/meta-data"] = cm.Data["meta-data"]
	}
	for p, content := range files {
		if m := move(p); m != p {
			if err := os.WriteFile(m, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(bin, "--dry-run")
	cmd.Env = append(envv, "TERMINATION_LOG="+filepath.Join(dir, "termination-log"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestStagesAgree: for every accepted value, no stage refuses (exit 2) the env the chart gives
// it: the chart must not accept what a stage refuses.
func TestStagesAgree(t *testing.T) {
	bins := binDir(t)
	for _, tc := range hostileAccepted {
		t.Run(tc.name, func(t *testing.T) {
			r := renderCase(t, tc)
			for _, o := range r.Objects {
				if o.Kind != "StatefulSet" {
					continue
				}
				s, err := r.StatefulSet(o.Name)
				if err != nil {
					t.Fatal(err)
				}
				var cm *corev1.ConfigMap
				if c, err := r.ConfigMap(o.Name + "-seed"); err == nil {
					cm = c
				}
				for _, c := range allContainers(s) {
					b, ok := stageOf[c.Name]
					if !ok {
						continue
					}
					if c.Name == "vm" && runtime.NumCPU() < mustAtoi(t, kubeletEnv(c)["VM_CPUS"]) {
						t.Fatalf("VM_CPUS %s is over this host's %d CPUs (vmm refuses that): use fewer in the case", kubeletEnv(c)["VM_CPUS"], runtime.NumCPU())
					}
					code, out := stageDryRun(t, filepath.Join(bins, b), s, cm, c, plainTempDir(t))
					if code == 2 {
						t.Errorf("%s %s --dry-run refuses what the chart accepted (exit 2):\n%s", o.Name, b, out)
					}
				}
			}
		})
	}
}

// The harness sees a stage's exit 2 (so TestStagesAgree can fail).
func TestStageDryRunSeesRefusal(t *testing.T) {
	bins := binDir(t)
	r := render(t, oneVM)
	s := sts(t, r, "vm1")
	vm := container(t, s, "vm")
	for i, e := range vm.Env {
		if e.Name == "VM_MEMORY" {
			vm.Env[i].Value = "8G"
		}
	}
	if code, out := stageDryRun(t, filepath.Join(bins, "vmm"), s, nil, vm, plainTempDir(t)); code != 2 || !strings.Contains(out, "VM_MEMORY") {
		t.Errorf("vmm with VM_MEMORY=8G: exit %d, want 2 naming VM_MEMORY:\n%s", code, out)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// Every privilege and device configuration of the security audit renders objects the API
// server's validation accepts.
func TestAuditVariantsValidate(t *testing.T) {
	for _, v := range auditVariants {
		t.Run(v.name, func(t *testing.T) {
			r := render(t, v.values)
			hooks, err := r.HookObjects()
			if err != nil {
				t.Fatal(err)
			}
			all := append(append([]Object(nil), r.Objects...), hooks...)
			if err := Validate(all); err != nil {
				t.Error(err)
			}
			if err := APIValidate(all, ns); err != nil {
				t.Errorf("the API server's validation: %v", err)
			}
		})
	}
}

// A release name must make valid StatefulSet (DNS label) and Service (starting with a letter)
// names; Helm itself allows dots and a leading digit.
func TestReleaseNameRefused(t *testing.T) {
	c := load(t)
	vals, err := ParseValues(oneVM)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"1st", "a.b"} {
		_, err := Render(c, name, ns, vals)
		if err == nil || !strings.Contains(err.Error(), "the release name \""+name+"\"") {
			t.Errorf("release %q: %v, want the release name refused", name, err)
		}
	}
	r, err := Render(c, "a1", ns, vals)
	if err != nil {
		t.Fatal(err)
	}
	if err := APIValidate(r.Objects, ns); err != nil {
		t.Error(err)
	}
}
