package charttest

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// pvcObject is a PVC in namespace vms as the API server returns it: disk-size annotation (""
// for none, as volumeClaimTemplates made it), class ("" for none), request and capacity.
func pvcObject(name, diskSize, class, mode, request, capacity string) string {
	ann := ""
	if diskSize != "" {
		ann = fmt.Sprintf("annotations: {berth-vm.github.io/disk-size: %q}", diskSize)
	}
	cls := ""
	if class != "" {
		cls = fmt.Sprintf("storageClassName: %s, ", class)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: vms, %s}
spec: {%svolumeMode: %s, accessModes: [ReadWriteOnce], resources: {requests: {storage: %q}}}
status: {phase: Bound, capacity: {storage: %q}}
`, name, ann, cls, mode, request, capacity)
}

func storageClass(name string, expansion bool) string {
	return fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: %s}
provisioner: example.com/csi
allowVolumeExpansion: %v
`, name, expansion)
}

// legacyStatefulSet is a StatefulSet as the chart before it owned the PVC made it.
const legacyStatefulSet = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: rel-vm1, namespace: vms}
spec:
  serviceName: rel-vm1
  selector: {matchLabels: {berth-vm.github.io/vm: vm1}}
  template: {metadata: {labels: {berth-vm.github.io/vm: vm1}}, spec: {containers: [{name: vm, image: x}]}}
  volumeClaimTemplates:
    - metadata: {name: disk}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
`

// The checks that need the cluster's objects (Helm's lookup, empty under `helm template`), as
// `helm upgrade` runs them: the migration from volumeClaimTemplates, shrink refused, the request
// never below the PVC's, growth only where the StorageClass allows expansion, and NOTES saying
// which.
func TestDiskLookup(t *testing.T) {
	c := load(t)
	const dataDisk = "    disks: [{name: data, size: 20Gi, storageClassName: grows}, {name: db, size: 4Gi, volumeMode: Block, storageClassName: fixed}]\n"
	for _, tc := range []struct {
		name    string
		values  string   // after oneVM
		objects []string // in the cluster
		wantErr string   // the whole failure must contain it
		request map[string]string
		class   map[string]string // the rendered storageClassName of a PVC
		notes   []string          // lines NOTES must hold
	}{
		{name: "nothing in the cluster: a new install", values: "    class_name: fixed\n",
			objects: []string{storageClass("fixed", false)},
			request: map[string]string{"disk-rel-vm1-0": "11135Mi"},
			notes:   []string{"disks:    root 10Gi in PVC disk-rel-vm1-0, request 11135Mi, class fixed does not allow expansion (the size cannot grow past the volume)"}},
		{name: "a StatefulSet of an earlier chart version: the migration's commands",
			objects: []string{legacyStatefulSet, pvcObject("disk-rel-vm1-0", "", "fixed", "Filesystem", "10Gi", "10Gi")},
			wantErr: "berth: this release's StatefulSets were made by an earlier chart version, whose volumeClaimTemplates a StatefulSet cannot change; this version makes each disk's PVC itself. Hand the PVCs to the release (the VMs keep running, their disks are kept):\n" +
				"  kubectl -n vms delete statefulset rel-vm1 --cascade=orphan\n" +
				"  kubectl -n vms label pvc disk-rel-vm1-0 app.kubernetes.io/managed-by=Helm\n" +
				"  kubectl -n vms annotate pvc disk-rel-vm1-0 meta.helm.sh/release-name=rel meta.helm.sh/release-namespace=vms\n" +
				"then run helm upgrade again"},
		{name: "the chart's own StatefulSet (no volumeClaimTemplates): no migration",
			objects: []string{strings.Split(legacyStatefulSet, "  volumeClaimTemplates:")[0], pvcObject("disk-rel-vm1-0", "10Gi", "", "Filesystem", "11135Mi", "11135Mi")},
			request: map[string]string{"disk-rel-vm1-0": "11135Mi"}},
		{name: "diskSize shrunk", values: "    diskSize: 8Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "grows", "Filesystem", "11135Mi", "11135Mi"), storageClass("grows", true)},
			wantErr: "berth: vms.vm1.diskSize 8Gi is smaller than the disk it names, 10Gi (PVC disk-rel-vm1-0): disks are never shrunk; set it to 10Gi or larger"},
		{name: "data disk shrunk", values: dataDisk,
			objects: []string{pvcObject("data-rel-vm1.data", "30Gi", "grows", "Filesystem", "40Gi", "40Gi")},
			wantErr: "berth: vms.vm1.disks[0].size 20Gi is smaller than the disk it names, 30Gi (PVC data-rel-vm1.data): disks are never shrunk"},
		{name: "Block disk shrunk", values: dataDisk,
			objects: []string{pvcObject("data-rel-vm1.db", "5Gi", "fixed", "Block", "5Gi", "5Gi")},
			wantErr: "berth: vms.vm1.disks[1].size 4Gi is smaller than the disk it names, 5Gi (PVC data-rel-vm1.db): disks are never shrunk"},
		{name: "diskSize grown on a class that allows expansion", values: "    diskSize: 12Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "grows", "Filesystem", "11135Mi", "11135Mi"), storageClass("grows", true)},
			request: map[string]string{"disk-rel-vm1-0": "13361Mi"},
			notes:   []string{"disks:    root 12Gi in PVC disk-rel-vm1-0, request 13361Mi, class grows allows expansion (a larger size grows the PVC)"}},
		{name: "diskSize grown on a class that does not", values: "    diskSize: 12Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "fixed", "Filesystem", "11135Mi", "11135Mi"), storageClass("fixed", false)},
			wantErr: "berth: vms.vm1.diskSize 12Gi needs a volume of 13361Mi, but PVC disk-rel-vm1-0 requests 11135Mi and its StorageClass fixed does not allow expansion (allowVolumeExpansion is not true): the disk is never grown past its volume; keep the size the disk has (10Gi), or put the disk on a class that allows expansion"},
		{name: "diskSize grown on a class that is not there (a static PV)", values: "    diskSize: 12Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "berth-local", "Filesystem", "11135Mi", "11135Mi")},
			wantErr: "requests 11135Mi and its StorageClass berth-local is not there, so it cannot expand: the disk is never grown past its volume"},
		{name: "diskSize grown on a PVC without a class", values: "    diskSize: 12Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "", "Filesystem", "11135Mi", "11135Mi")},
			wantErr: "requests 11135Mi and it has no StorageClass, so it cannot expand: the disk is never grown past its volume"},
		{name: "Block disk grown on a class that does not", values: strings.Replace(dataDisk, "size: 4Gi", "size: 6Gi", 1),
			objects: []string{pvcObject("data-rel-vm1.db", "4Gi", "fixed", "Block", "4Gi", "4Gi"), storageClass("fixed", false)},
			wantErr: "berth: vms.vm1.disks[1].size 6Gi needs a volume of 6Gi, but PVC data-rel-vm1.db requests 4Gi and its StorageClass fixed does not allow expansion"},
		{name: "grown within the volume's capacity: no expansion needed", values: "    diskSize: 12Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "fixed", "Filesystem", "11135Mi", "20Gi"), storageClass("fixed", false)},
			request: map[string]string{"disk-rel-vm1-0": "11135Mi"}},
		{name: "the request never goes below the PVC's",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "grows", "Filesystem", "50Gi", "50Gi"), storageClass("grows", true)},
			request: map[string]string{"disk-rel-vm1-0": "50Gi"}},
		{name: "a PVC from volumeClaimTemplates, adopted, on a class that cannot grow: kept, NOTES warns",
			objects: []string{pvcObject("disk-rel-vm1-0", "", "fixed", "Filesystem", "10Gi", "10Gi"), storageClass("fixed", false)},
			request: map[string]string{"disk-rel-vm1-0": "10Gi"},
			notes: []string{"disks:    root 10Gi in PVC disk-rel-vm1-0, request 10Gi, class fixed does not allow expansion (the size cannot grow past the volume)",
				"WARNING: the volume is smaller than the disk written full needs (11135Mi) and cannot grow:"}},
		{name: "a PVC from volumeClaimTemplates, adopted, grown past its old diskSize on a class that cannot", values: "    diskSize: 12Gi\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "", "fixed", "Filesystem", "10Gi", "10Gi"), storageClass("fixed", false)},
			wantErr: "keep the size the disk has (10Gi)"},
		{name: "a PVC from volumeClaimTemplates, adopted, on a class that grows: the request grows",
			objects: []string{pvcObject("disk-rel-vm1-0", "", "grows", "Filesystem", "10Gi", "10Gi"), storageClass("grows", true)},
			request: map[string]string{"disk-rel-vm1-0": "11135Mi"}},
		{name: "data disks: each its own PVC", values: strings.Replace(dataDisk, "size: 20Gi", "size: 30Gi", 1),
			objects: []string{pvcObject("data-rel-vm1.data", "20Gi", "grows", "Filesystem", "22267Mi", "22267Mi"), storageClass("grows", true),
				pvcObject("data-rel-vm1.db", "4Gi", "fixed", "Block", "4Gi", "4Gi"), storageClass("fixed", false)},
			request: map[string]string{"disk-rel-vm1-0": "11135Mi", "data-rel-vm1.data": "33399Mi", "data-rel-vm1.db": "4Gi"},
			notes: []string{"            data 30Gi (Filesystem qcow2, virtio-blk, /dev/disk/by-id/virtio-data) in PVC data-rel-vm1.data, request 33399Mi, class grows allows expansion",
				"            db 4Gi (Block, virtio-blk, /dev/disk/by-id/virtio-db) in PVC data-rel-vm1.db, request 4Gi, class fixed does not allow expansion"}},
		{name: "a PVC not bound yet cannot grow", values: "    diskSize: 12Gi\n",
			objects: []string{strings.Replace(pvcObject("disk-rel-vm1-0", "10Gi", "grows", "Filesystem", "11135Mi", "0"), "phase: Bound", "phase: Pending", 1), storageClass("grows", true)},
			wantErr: "berth: vms.vm1.diskSize 12Gi needs a volume of 13361Mi, but PVC disk-rel-vm1-0 (request 11135Mi) is not bound to a volume yet, and Kubernetes changes only a bound PVC's request"},
		{name: "an existing PVC keeps its class when the values name none",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "local", "Filesystem", "11135Mi", "11135Mi")},
			request: map[string]string{"disk-rel-vm1-0": "11135Mi"}, class: map[string]string{"disk-rel-vm1-0": "local"}},
		{name: "a PVC's class cannot change", values: "    class_name: other\n",
			objects: []string{pvcObject("disk-rel-vm1-0", "10Gi", "grows", "Filesystem", "11135Mi", "11135Mi")},
			wantErr: `berth: vms.vm1.class_name is "other", but PVC disk-rel-vm1-0 exists with storageClassName "grows": a PVC's class cannot change`},
		{name: "a data disk PVC's class cannot change", values: dataDisk,
			objects: []string{pvcObject("data-rel-vm1.data", "20Gi", "fixed", "Filesystem", "22267Mi", "22267Mi")},
			wantErr: `berth: vms.vm1.disks[0].storageClassName is "grows", but PVC data-rel-vm1.data exists with storageClassName "fixed"`},
		{name: "a PVC's volumeMode cannot change", values: dataDisk,
			objects: []string{pvcObject("data-rel-vm1.db", "4Gi", "fixed", "Filesystem", "4Gi", "4Gi")},
			wantErr: "berth: vms.vm1.disks[1].volumeMode is Block, but PVC data-rel-vm1.db exists with volumeMode Filesystem: a PVC's volumeMode cannot change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := ParseValues(oneVM + tc.values)
			if err != nil {
				t.Fatal(err)
			}
			cluster, err := NewCluster(tc.objects...)
			if err != nil {
				t.Fatal(err)
			}
			out, err := RenderUpgrade(c, rel, ns, vals, cluster)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("accepted; want a failure with %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("failure does not hold %q:\n%v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var manifest strings.Builder
			for name, text := range out {
				if strings.HasSuffix(name, ".yaml") {
					manifest.WriteString("\n---\n" + text)
				}
			}
			r := &Rendered{Manifest: manifest.String()}
			if r.Objects, err = SplitManifest(r.Manifest); err != nil {
				t.Fatal(err)
			}
			for claim, want := range tc.request {
				pvc, err := r.PVC(claim)
				if err != nil {
					t.Fatal(err)
				}
				if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != want {
					t.Errorf("%s: request %s, want %s", claim, q.String(), want)
				}
			}
			for claim, want := range tc.class {
				pvc, err := r.PVC(claim)
				if err != nil {
					t.Fatal(err)
				}
				if got := pvc.Spec.StorageClassName; got == nil || *got != want {
					t.Errorf("%s: storageClassName %v, want %s", claim, got, want)
				}
			}
			notes := out["berth/templates/NOTES.txt"]
			for _, l := range tc.notes {
				if !strings.Contains(notes, l) {
					t.Errorf("NOTES does not hold %q:\n%s", l, notes)
				}
			}
		})
	}
}
