package charttest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/quantity"
	corev1 "k8s.io/api/core/v1"
)

// contractRequest is the PVC request of the issue-18 contract, in bytes: a Filesystem disk's file
// (qcow2: size + size/8192 + size/32768 + size/33554432 + 2 MiB; raw: size) over (100 - p) %, in
// whole MiB rounded up; a Block disk: exactly its size. (The contract's first formula had no
// size/33554432, the L1 and refcount tables: 8 bytes per 512 MiB and per 2 GiB. Beyond about 95Ti
// they outgrow the 2 MiB, and the request was below FullAllocation: TestVolumeRequest found it at
// 2048Ti.)
func contractRequest(size uint64, format, volumeMode string, p uint64) uint64 {
	if volumeMode == "Block" {
		return size
	}
	file := size
	if format == "qcow2" {
		file = size + size/8192 + size/32768 + size/33554432 + 2<<20
	}
	den := (100 - p) << 20
	return (file*100 + den - 1) / den << 20
}

// TestVolumeRequest: each PVC's request is the contract's formula, and it always holds the disk
// at full allocation (common/disks.FullAllocation, which equals qemu-img measure) with the
// overhead to spare: request × (1 - p/100) >= FullAllocation.
func TestVolumeRequest(t *testing.T) {
	sizes := []string{"512", "1536", "65536", "1Mi", "1048064", "100Mi", "1Gi", "1073742336", "10Gi", "20Gi", "1000Gi", "1Ti", "2047Gi", "64Ti", "95Ti", "96Ti", "512Ti", "2048Ti"}
	for _, p := range []uint64{0, 1, 8, 20, 50} {
		t.Run(fmt.Sprintf("volumeOverheadPercent %d", p), func(t *testing.T) {
			type want struct{ size, format, mode string }
			wants := map[string]want{"disk-rel-vm1-0": {"10Gi", "qcow2", "Filesystem"}}
			var b strings.Builder
			fmt.Fprintf(&b, "%s    volumeOverheadPercent: %d\n    disks:\n", oneVM, p)
			for i, s := range sizes {
				for _, kind := range []want{{s, "qcow2", "Filesystem"}, {s, "raw", "Filesystem"}, {s, "raw", "Block"}} {
					name := fmt.Sprintf("d%d-%s-%s", i, kind.format, strings.ToLower(kind.mode))
					fmt.Fprintf(&b, "      - {name: %s, size: %q, format: %s, volumeMode: %s}\n", name, s, kind.format, kind.mode)
					wants["data-rel-vm1."+name] = kind
				}
			}
			r := render(t, b.String())
			for claim, w := range wants {
				pvc, err := r.PVC(claim)
				if err != nil {
					t.Fatal(err)
				}
				size, err := quantity.ParseBytes(w.size)
				if err != nil {
					t.Fatal(err)
				}
				q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
				got := uint64(q.Value())
				if want := contractRequest(size, w.format, w.mode, p); got != want {
					t.Errorf("%s (%s %s %s): request %s = %d, want %d", claim, w.size, w.mode, w.format, q.String(), got, want)
				}
				if w.mode == "Block" {
					if got != size {
						t.Errorf("%s: a Block volume requests %s, want exactly its size %s", claim, q.String(), w.size)
					}
					continue
				}
				if full := disks.FullAllocation(w.format, size); got*(100-p) < full*100 {
					t.Errorf("%s (%s %s): request %d x (1 - %d %%) < FullAllocation %d", claim, w.size, w.format, got, p, full)
				}
				if *pvc.Spec.VolumeMode != corev1.PersistentVolumeMode(w.mode) {
					t.Errorf("%s: volumeMode %s, want %s", claim, *pvc.Spec.VolumeMode, w.mode)
				}
			}
		})
	}
}

// The formula's file size alone is at least FullAllocation (the 2 MiB covers the header and each
// table's rounding to a cluster), from the smallest disk to the largest.
func TestVolumeRequestCoversFullAllocation(t *testing.T) {
	for _, size := range []uint64{512, 1 << 16, 1<<16 + 512, 1 << 20, 1<<30 - 512, 1 << 30, 7<<30 + 512, 1 << 40, 95 << 40, 96 << 40, 1<<50 + 512, 2048 << 40} {
		file := size + size/8192 + size/32768 + size/33554432 + 2<<20
		if full := disks.FullAllocation("qcow2", size); file < full {
			t.Errorf("size %d: the formula's qcow2 file %d < FullAllocation %d", size, file, full)
		}
	}
}

// The pod sees each disk where common/disks says: DATA_DISKS parses (disks.Parse) to the values'
// disks with their defaults; each Filesystem disk's volume (subPath berth) at
// disks.DefaultDir/<name> in disk-owner, image-fetch and vm; each Block disk's device at
// /dev/berth/<name> in image-fetch and vm; the claims as the values say.
func TestDiskMounts(t *testing.T) {
	r := render(t, oneVM+`    disks:
      - {name: data, size: 20Gi}
      - {name: scratch, size: 1Gi, format: raw, bus: virtio-scsi, cache: writeback, discard: ignore, storageClassName: fast}
      - {name: db, size: 4Gi, volumeMode: Block, storageClassName: berth-csi}
      - {name: old, size: 2Gi, existingClaim: my-claim}
`)
	s := sts(t, r, "vm1")
	p := s.Spec.Template.Spec
	if got, want := names(p.InitContainers), []string{"net-setup", "image-cache", "disk-owner", "image-fetch", "seed-iso", "dnsmasq"}; !slices.Equal(got, want) {
		t.Errorf("init containers %v, want %v", got, want)
	}
	claims := map[string]string{}
	for _, v := range p.Volumes {
		if v.PersistentVolumeClaim != nil {
			claims[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}
	wantClaims := map[string]string{"disk": "disk-rel-vm1-0", "disk-data": "data-rel-vm1.data", "disk-scratch": "data-rel-vm1.scratch", "disk-db": "data-rel-vm1.db", "disk-old": "my-claim"}
	if fmt.Sprint(claims) != fmt.Sprint(wantClaims) {
		t.Errorf("pod claims %v, want %v", claims, wantClaims)
	}
	if got, want := r.Kinds(), []string{"ConfigMap/rel-vm1-seed", "PersistentVolumeClaim/data-rel-vm1.data", "PersistentVolumeClaim/data-rel-vm1.db", "PersistentVolumeClaim/data-rel-vm1.scratch", "PersistentVolumeClaim/disk-rel-vm1-0", "ServiceAccount/rel-berth", "StatefulSet/rel-vm1"}; !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v (no PVC for an existingClaim)", got, want)
	}
	for claim, class := range map[string]string{"data-rel-vm1.data": "", "data-rel-vm1.scratch": "fast", "data-rel-vm1.db": "berth-csi", "disk-rel-vm1-0": ""} {
		pvc, err := r.PVC(claim)
		if err != nil {
			t.Fatal(err)
		}
		if got := pvc.Spec.StorageClassName; (class == "") != (got == nil) || (got != nil && *got != class) {
			t.Errorf("%s: storageClassName %v, want %q", claim, got, class)
		}
		if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s: not kept on uninstall: %v", claim, pvc.Annotations)
		}
		if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
			t.Errorf("%s: accessModes %v", claim, pvc.Spec.AccessModes)
		}
	}

	want := []disks.Disk{
		{Name: "data", Size: "20Gi", VolumeMode: "Filesystem", Format: "qcow2", Bus: "virtio-blk", Cache: "none", Discard: "unmap"},
		{Name: "scratch", Size: "1Gi", VolumeMode: "Filesystem", Format: "raw", Bus: "virtio-scsi", Cache: "writeback", Discard: "ignore"},
		{Name: "db", Size: "4Gi", VolumeMode: "Block", Format: "raw", Bus: "virtio-blk", Cache: "none", Discard: "unmap"},
		{Name: "old", Size: "2Gi", VolumeMode: "Filesystem", Format: "qcow2", Bus: "virtio-blk", Cache: "none", Discard: "unmap"},
	}
	type mount struct{ volume, path, subPath string }
	wantMounts := []mount{{"disk", "/var/lib/berth/disk", "berth"}}
	var wantDevices []corev1.VolumeDevice
	for _, d := range want {
		if d.Block() {
			wantDevices = append(wantDevices, corev1.VolumeDevice{Name: "disk-" + d.Name, DevicePath: d.Path(disks.DefaultDir)})
		} else {
			wantMounts = append(wantMounts, mount{"disk-" + d.Name, d.VolumeDir(disks.DefaultDir), "berth"})
		}
	}
	for _, c := range []string{"disk-owner", "image-fetch", "vm"} {
		ctr := container(t, s, c)
		var got []mount
		for _, m := range ctr.VolumeMounts {
			if strings.HasPrefix(m.Name, "disk") {
				got = append(got, mount{m.Name, m.MountPath, m.SubPath})
			}
		}
		wm := wantMounts
		if c == "image-fetch" {
			wm = append(slices.Clone(wm), mount{"disk", "/var/lib/berth/volume", ""}) // the legacy layout's root
		}
		if fmt.Sprint(got) != fmt.Sprint(wm) {
			t.Errorf("%s: disk mounts\n got %v\nwant %v", c, got, wm)
		}
		wd := wantDevices
		if c == "disk-owner" {
			wd = nil
		}
		if fmt.Sprint(ctr.VolumeDevices) != fmt.Sprint(wd) {
			t.Errorf("%s: volumeDevices %v, want %v", c, ctr.VolumeDevices, wd)
		}
		if c == "disk-owner" {
			continue
		}
		e := env(ctr)
		got2, err := disks.Parse(e[disks.Var])
		if err != nil {
			t.Errorf("%s: %v", c, err)
		}
		for i := range want {
			want[i].Bytes = 0
		}
		for i := range got2 {
			got2[i].Bytes = 0
		}
		if fmt.Sprint(got2) != fmt.Sprint(want) {
			t.Errorf("%s: DATA_DISKS parses to\n %v\nwant %v", c, got2, want)
		}
		if e["DATA_DISK_DIR"] != disks.DefaultDir {
			t.Errorf("%s: DATA_DISK_DIR %q, want %s", c, e["DATA_DISK_DIR"], disks.DefaultDir)
		}
		if legacy, ok := e["DISK_LEGACY_DIR"]; ok != (c == "image-fetch") || (ok && legacy != "/var/lib/berth/volume") {
			t.Errorf("%s: DISK_LEGACY_DIR %q (set %v), want /var/lib/berth/volume in image-fetch only", c, legacy, ok)
		}
	}
	owner := container(t, s, "disk-owner")
	if got, want := owner.Command, []string{"install", "-d", "-o", "107", "-g", "107", "-m", "0750", "/var/lib/berth/disk", "/var/lib/berth/disks/data", "/var/lib/berth/disks/scratch", "/var/lib/berth/disks/old"}; !slices.Equal(got, want) {
		t.Errorf("disk-owner command %v, want %v", got, want)
	}
	sc := owner.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.Privileged != nil && *sc.Privileged ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" || fmt.Sprint(sc.Capabilities.Add) != "[CHOWN FOWNER]" {
		t.Errorf("disk-owner securityContext %+v: want root with CHOWN and FOWNER only", sc)
	}
	if owner.Image != container(t, s, "image-fetch").Image {
		t.Errorf("disk-owner image %s, want image-fetch's", owner.Image)
	}
}

// A VM without data disks: no DATA_DISKS, the root disk's mounts only, disk-owner owns its
// directory alone.
func TestDiskMountsRootOnly(t *testing.T) {
	s := sts(t, render(t, oneVM+"    vmUID: 2000\n"), "vm1")
	for _, c := range []string{"image-fetch", "vm"} {
		e := env(container(t, s, c))
		if _, ok := e[disks.Var]; ok {
			t.Errorf("%s: DATA_DISKS %q without data disks", c, e[disks.Var])
		}
		if len(container(t, s, c).VolumeDevices) != 0 {
			t.Errorf("%s: volumeDevices without Block disks", c)
		}
	}
	if got, want := container(t, s, "disk-owner").Command, []string{"install", "-d", "-o", "2000", "-g", "2000", "-m", "0750", "/var/lib/berth/disk"}; !slices.Equal(got, want) {
		t.Errorf("disk-owner command %v, want %v", got, want)
	}
}

// What the schema and the chart refuse in disks and volumeOverheadPercent, each with the key.
func TestDisksRefused(t *testing.T) {
	c := load(t)
	other := "\n  vm2:\n    image: {source: http://x/y.qcow2}\n"
	for _, tc := range []struct{ name, values, msg string }{
		{"duplicate names", "    disks: [{name: a, size: 1Gi}, {name: a, size: 2Gi}]\n", "berth: vms.vm1.disks[1] (a): the name a is taken by vms.vm1.disks[0]"},
		{"Block and qcow2", "    disks: [{name: a, size: 1Gi, volumeMode: Block, format: qcow2}]\n", "berth: vms.vm1.disks[0] (a): volumeMode Block with format qcow2"},
		{"existingClaim and storageClassName", "    disks: [{name: a, size: 1Gi, existingClaim: c, storageClassName: s}]\n", "berth: vms.vm1.disks[0] (a): storageClassName is the class of the PVC the chart makes"},
		{"size not a multiple of 512", "    disks: [{name: a, size: \"1000\"}]\n", "berth: vms.vm1.disks[0] (a): size 1000 must be a multiple of 512"},
		{"two disks on one existingClaim", "    disks: [{name: a, size: 1Gi, existingClaim: c}, {name: b, size: 1Gi, existingClaim: c}]\n", "berth: vms.vm1.disks[0] (a) and vms.vm1.disks[1] (b) would both use PersistentVolumeClaim c"},
		{"existingClaim is another VM's root disk", "    disks: [{name: a, size: 1Gi, existingClaim: disk-rel-vm2-0}]\n" + other, "berth: vms.vm1.disks[0] (a) and vms.vm2.diskSize would both use PersistentVolumeClaim disk-rel-vm2-0"},
		{"existingClaim is another VM's data disk", "    disks: [{name: a, size: 1Gi, existingClaim: data-rel-vm2.b}]\n" + other + "    disks: [{name: b, size: 1Gi}]\n", "would both use PersistentVolumeClaim data-rel-vm2.b"},
		{"name root", "    disks: [{name: root, size: 1Gi}]\n", "/vms/vm1/disks/0/name"},
		{"name over 20", "    disks: [{name: a-very-long-name-for-a, size: 1Gi}]\n", "/vms/vm1/disks/0/name"},
		{"name not a label", "    disks: [{name: Data, size: 1Gi}]\n", "/vms/vm1/disks/0/name"},
		{"name starting with a digit", "    disks: [{name: 1a, size: 1Gi}]\n", "/vms/vm1/disks/0/name"},
		{"no size", "    disks: [{name: a}]\n", "/vms/vm1/disks/0"},
		{"decimal size", "    disks: [{name: a, size: 1G}]\n", "/vms/vm1/disks/0/size"},
		{"volumeMode", "    disks: [{name: a, size: 1Gi, volumeMode: block}]\n", "/vms/vm1/disks/0/volumeMode"},
		{"format", "    disks: [{name: a, size: 1Gi, format: vmdk}]\n", "/vms/vm1/disks/0/format"},
		{"bus", "    disks: [{name: a, size: 1Gi, bus: ide}]\n", "/vms/vm1/disks/0/bus"},
		{"cache", "    disks: [{name: a, size: 1Gi, cache: unsafe}]\n", "/vms/vm1/disks/0/cache"},
		{"discard", "    disks: [{name: a, size: 1Gi, discard: on}]\n", "/vms/vm1/disks/0/discard"},
		{"storageClassName", "    disks: [{name: a, size: 1Gi, storageClassName: Fast_SSD}]\n", "/vms/vm1/disks/0/storageClassName"},
		{"unknown key", "    disks: [{name: a, size: 1Gi, serial: x}]\n", "/vms/vm1/disks/0"},
		{"disks not a list", "    disks: {a: {size: 1Gi}}\n", "/vms/vm1/disks"},
		{"volumeOverheadPercent over 50", "    volumeOverheadPercent: 51\n", "/vms/vm1/volumeOverheadPercent"},
		{"volumeOverheadPercent negative", "    volumeOverheadPercent: -1\n", "/vms/vm1/volumeOverheadPercent"},
		{"volumeOverheadPercent a fraction", "    volumeOverheadPercent: 7.5\n", "/vms/vm1/volumeOverheadPercent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefused(t, c, oneVM+tc.values, tc.msg)
		})
	}
}
