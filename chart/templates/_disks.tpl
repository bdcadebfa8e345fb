{{/*
The VM's disks: the root disk (diskSize, class_name) and the data disks (disks), the PVCs the chart
makes for them (pvc.yaml) and how big those are. The argument of each helper is a VM context (see
_helpers.tpl) unless said otherwise.

A PVC the chart makes is kept on uninstall (helm.sh/resource-policy: keep) and carries the disk's
size as given (annotation berth-vm.github.io/disk-size). On upgrade, Helm's lookup reads the PVC
that exists (lookup is empty under `helm template` and client-side dry runs: every use is
guarded): a disk is never shrunk, the request never goes below the PVC's, and a disk grows past
its volume only on a StorageClass that allows expansion.
*/}}

{{/* berth.quantityBytes: a quantity as the API server writes a PVC's request or capacity (a whole
number, with or without a binary or decimal suffix) → bytes. dict what quantity. */}}
{{- define "berth.quantityBytes" -}}
{{- $q := toString .quantity -}}
{{- $n := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $n $q -}}
{{- $m := get (dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000) $unit -}}
{{- if or (not $n) (not $m) -}}
{{- fail (printf "berth: %s is %q, which the chart cannot read (a whole number of bytes, or with Ki, Mi, Gi, Ti, Pi, k, M, G, T, P)" .what $q) -}}
{{- end -}}
{{- mul ($n | int64) $m -}}
{{- end -}}

{{/* berth.volumeRequest: the PVC request that holds a disk at full allocation. dict size format
volumeMode overhead (volumeOverheadPercent) → a quantity. A Block disk is the volume: exactly its
size. A file on a Filesystem volume: its fully allocated size (qcow2: the data, plus an 8-byte L2
entry and a 2-byte refcount per 64 KiB cluster, plus size/2^25 for the L1 and refcount tables
(8 bytes per 512 MiB and per 2 GiB: 40 MiB of a 2048Ti disk), plus 2 MiB for the header and the
rounding of every table to a cluster; raw: the size), divided by 1 - overhead/100 (the filesystem's own:
ext4 keeps 5 % for root, which QEMU, not root, cannot use, plus inode tables and journal), in
whole MiB rounded up. charttest compares it with common/disks.FullAllocation. */}}
{{- define "berth.volumeRequest" -}}
{{- if eq .volumeMode "Block" -}}
{{- .size -}}
{{- else -}}
{{- $size := include "berth.bytes" .size | int64 -}}
{{- $file := $size -}}
{{- if eq .format "qcow2" -}}
{{- $file = add $size (div $size 8192) (div $size 32768) (div $size 33554432) 2097152 | int64 -}}
{{- end -}}
{{- $den := mul (sub 100 (int64 .overhead)) 1048576 -}}
{{- printf "%dMi" (div (add (mul $file 100) $den -1) $den) -}}
{{- end -}}
{{- end -}}

{{/* berth.dataDisks: the VM's data disks (vms.<name>.disks), every default filled in
(Filesystem, qcow2 or raw for Block, virtio-blk, cache none, discard unmap) plus the claim the pod
mounts and the pod's volume name, as a JSON array; fails on what the schema cannot see. */}}
{{- define "berth.dataDisks" -}}
{{- $full := include "berth.fullname" . -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range $i, $d := .vm.disks | default list -}}
{{- $what := printf "vms.%s.disks[%d] (%s)" $.name $i $d.name -}}
{{- if hasKey $seen $d.name -}}
{{- fail (printf "berth: %s: the name %s is taken by vms.%s.disks[%d]: each name is one disk's serial" $what $d.name $.name (get $seen $d.name)) -}}
{{- end -}}
{{- $_ := set $seen $d.name $i -}}
{{- $mode := $d.volumeMode | default "Filesystem" -}}
{{- $format := $d.format | default (ternary "raw" "qcow2" (eq $mode "Block")) -}}
{{- if and (eq $mode "Block") (ne $format "raw") -}}
{{- fail (printf "berth: %s: volumeMode Block with format %s: a Block disk is the volume's device itself, raw (leave format out, or use volumeMode Filesystem for a qcow2 file)" $what $format) -}}
{{- end -}}
{{- if and $d.existingClaim $d.storageClassName -}}
{{- fail (printf "berth: %s: storageClassName is the class of the PVC the chart makes; with existingClaim %s the chart makes none: leave one of them out" $what $d.existingClaim) -}}
{{- end -}}
{{- if ne (mod (include "berth.bytes" $d.size | int64) 512) 0 -}}
{{- fail (printf "berth: %s: size %s must be a multiple of 512 bytes (e.g. 20Gi)" $what $d.size) -}}
{{- end -}}
{{- $claim := $d.existingClaim | default (printf "data-%s.%s" $full $d.name) -}}
{{- $out = append $out (dict "name" $d.name "size" $d.size "volumeMode" $mode "format" $format "bus" ($d.bus | default "virtio-blk") "cache" ($d.cache | default "none") "discard" ($d.discard | default "unmap") "storageClassName" ($d.storageClassName | default "") "existingClaim" ($d.existingClaim | default "") "claim" $claim "volume" (printf "disk-%s" $d.name) "index" $i) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* berth.dataDisksEnv: DATA_DISKS, the disks as common/disks.Parse reads them (its keys only). */}}
{{- define "berth.dataDisksEnv" -}}
{{- $out := list -}}
{{- range fromJsonArray (include "berth.dataDisks" .) -}}
{{- $out = append $out (pick . "name" "size" "volumeMode" "format" "bus" "cache" "discard") -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* berth.claims: the PVCs the chart makes for the VM (the root disk's, then each data disk's
without existingClaim) as a JSON array, each {what, key, classKey, modeKey, disk, name, size,
volumeMode, format, class (the values'), request, need (what the formula asks), found, pvcClass
(the existing PVC's class, else class), classSeen, expandable, short, current}. With lookup (helm
install or upgrade against a cluster) an existing PVC decides: a size below its disk-size
annotation is refused (disks are never shrunk); the request is never below the PVC's; a request
past what its volume holds needs a StorageClass with allowVolumeExpansion, else a larger size is
refused and an unchanged one keeps the PVC's request (short: the volume is smaller than the disk
at full allocation, and NOTES says so); a PVC not bound yet cannot grow. An existing PVC keeps its
class in the rendering even when the values name none (a PVC's class cannot change, and Helm
would otherwise remove the field). */}}
{{- define "berth.claims" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $full := include "berth.fullname" . -}}
{{- $overhead := int64 .vm.volumeOverheadPercent -}}
{{- $claims := list (dict "what" (printf "vms.%s.diskSize" .name) "key" "diskSize" "classKey" (printf "vms.%s.class_name" .name) "disk" "root" "name" (printf "disk-%s-0" $full) "size" (toString .vm.diskSize) "volumeMode" "Filesystem" "format" "qcow2" "class" (.vm.class_name | default "")) -}}
{{- range fromJsonArray (include "berth.dataDisks" .) -}}
{{- if not .existingClaim -}}
{{- $claims = append $claims (dict "what" (printf "vms.%s.disks[%d].size" $.name (int .index)) "key" (printf "disks[%d].size" (int .index)) "classKey" (printf "vms.%s.disks[%d].storageClassName" $.name (int .index)) "modeKey" (printf "vms.%s.disks[%d].volumeMode" $.name (int .index)) "disk" .name "name" .claim "size" .size "volumeMode" .volumeMode "format" .format "class" .storageClassName) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $c := $claims -}}
{{- $request := include "berth.volumeRequest" (dict "size" $c.size "format" $c.format "volumeMode" $c.volumeMode "overhead" $overhead) -}}
{{- $need := include "berth.quantityBytes" (dict "what" "the request" "quantity" $request) | int64 -}}
{{- $size := include "berth.bytes" $c.size | int64 -}}
{{- $_ := set $c "found" false -}}
{{- $_ := set $c "classSeen" false -}}
{{- $_ := set $c "expandable" false -}}
{{- $_ := set $c "short" false -}}
{{- $_ := set $c "current" "" -}}
{{- $_ := set $c "pvcClass" $c.class -}}
{{- $old := lookup "v1" "PersistentVolumeClaim" $ns $c.name -}}
{{- if $old -}}
{{- $_ := set $c "found" true -}}
{{- $spec := $old.spec | default dict -}}
{{- $oldClass := $spec.storageClassName | default "" -}}
{{- if and $c.class (ne $c.class $oldClass) -}}
{{- fail (printf "berth: %s is %q, but PVC %s exists with storageClassName %q: a PVC's class cannot change (set it back, or move the disk to a new PVC yourself)" $c.classKey $c.class $c.name $oldClass) -}}
{{- end -}}
{{- if and $spec.volumeMode (ne $spec.volumeMode $c.volumeMode) -}}
{{- fail (printf "berth: %s is %s, but PVC %s exists with volumeMode %s: a PVC's volumeMode cannot change" ($c.modeKey | default "the root disk's volumeMode") $c.volumeMode $c.name $spec.volumeMode) -}}
{{- end -}}
{{- $_ := set $c "pvcClass" $oldClass -}}
{{- $given := get ($old.metadata.annotations | default dict) "berth-vm.github.io/disk-size" -}}
{{- $oldReqQ := (($spec.resources | default dict).requests | default dict).storage | default "0" -}}
{{- $oldReq := include "berth.quantityBytes" (dict "what" (printf "PVC %s's request" $c.name) "quantity" $oldReqQ) | int64 -}}
{{- $capQ := ((($old.status | default dict).capacity | default dict).storage) | default "0" -}}
{{- $cap := include "berth.quantityBytes" (dict "what" (printf "PVC %s's capacity" $c.name) "quantity" $capQ) | int64 -}}
{{- $_ := set $c "current" (toString $oldReqQ) -}}
{{- /* the disk's size until now: the annotation; a PVC from volumeClaimTemplates has none, and
its request was the diskSize of the chart that made it */ -}}
{{- $was := $oldReq -}}
{{- if $given -}}
{{- $was = include "berth.quantityBytes" (dict "what" (printf "PVC %s's annotation berth-vm.github.io/disk-size" $c.name) "quantity" $given) | int64 -}}
{{- if lt $size $was -}}
{{- fail (printf "berth: %s %s is smaller than the disk it names, %s (PVC %s): disks are never shrunk; set it to %s or larger" $c.what $c.size $given $c.name $given) -}}
{{- end -}}
{{- end -}}
{{- if $oldClass -}}
{{- $sc := lookup "storage.k8s.io/v1" "StorageClass" "" $oldClass -}}
{{- if $sc -}}
{{- $_ := set $c "classSeen" true -}}
{{- $_ := set $c "expandable" (eq (toString $sc.allowVolumeExpansion) "true") -}}
{{- end -}}
{{- end -}}
{{- if le $need (max $oldReq $cap) -}}
{{- /* the volume holds it already: the PVC's request stays as it is */ -}}
{{- $request = $oldReqQ -}}
{{- else if not $c.expandable -}}
{{- if gt $size $was -}}
{{- $why := printf "its StorageClass %s does not allow expansion (allowVolumeExpansion is not true)" $oldClass -}}
{{- if not $oldClass -}}{{- $why = "it has no StorageClass, so it cannot expand" -}}
{{- else if not $c.classSeen -}}{{- $why = printf "its StorageClass %s is not there, so it cannot expand" $oldClass -}}
{{- end -}}
{{- fail (printf "berth: %s %s needs a volume of %s, but PVC %s requests %s and %s: the disk is never grown past its volume; keep the size the disk has (%s), or put the disk on a class that allows expansion" $c.what $c.size $request $c.name $oldReqQ $why ($given | default $oldReqQ)) -}}
{{- end -}}
{{- $request = $oldReqQ -}}
{{- $_ := set $c "short" true -}}
{{- else if ne (($old.status | default dict).phase | default "") "Bound" -}}
{{- fail (printf "berth: %s %s needs a volume of %s, but PVC %s (request %s) is not bound to a volume yet, and Kubernetes changes only a bound PVC's request: keep the size the disk has (%s) until the VM's pod has run once" $c.what $c.size $request $c.name $oldReqQ ($given | default $oldReqQ)) -}}
{{- end -}}
{{- else if $c.class -}}
{{- $sc := lookup "storage.k8s.io/v1" "StorageClass" "" $c.class -}}
{{- if $sc -}}
{{- $_ := set $c "classSeen" true -}}
{{- $_ := set $c "expandable" (eq (toString $sc.allowVolumeExpansion) "true") -}}
{{- end -}}
{{- end -}}
{{- $_ := set $c "need" (include "berth.volumeRequest" (dict "size" $c.size "format" $c.format "volumeMode" $c.volumeMode "overhead" $overhead)) -}}
{{- $_ := set $c "request" (toString $request) -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* berth.migration (argument: the root context): fail, with the commands that hand each disk
over, when a VM's StatefulSet was made by a chart version that had volumeClaimTemplates (which a
StatefulSet cannot change: the chart now makes the PVC itself). */}}
{{- define "berth.migration" -}}
{{- $ns := .Release.Namespace -}}
{{- $steps := list -}}
{{- range $name := fromJsonArray (include "berth.vmNames" .) -}}
{{- $ctx := dict "root" $ "name" $name -}}
{{- $full := include "berth.fullname" $ctx -}}
{{- $old := lookup "apps/v1" "StatefulSet" $ns $full -}}
{{- if and $old ($old.spec | default dict).volumeClaimTemplates -}}
{{- $pvc := printf "disk-%s-0" $full -}}
{{- $steps = append $steps (printf "  kubectl -n %s delete statefulset %s --cascade=orphan\n  kubectl -n %s label pvc %s app.kubernetes.io/managed-by=Helm\n  kubectl -n %s annotate pvc %s meta.helm.sh/release-name=%s meta.helm.sh/release-namespace=%s" $ns $full $ns $pvc $ns $pvc $.Release.Name $ns) -}}
{{- end -}}
{{- end -}}
{{- if $steps -}}
{{- fail (printf "berth: this release's StatefulSets were made by an earlier chart version, whose volumeClaimTemplates a StatefulSet cannot change; this version makes each disk's PVC itself. Hand the PVCs to the release (the VMs keep running, their disks are kept):\n%s\nthen run helm upgrade again (each VM's pod restarts once, on the same disk). docs/chart.md, \"Upgrading from a chart with volumeClaimTemplates\"" (join "\n" $steps)) -}}
{{- end -}}
{{- end -}}

{{/* berth.diskMounts: the volumeMounts of Berth's own directory (subPath berth) on every
Filesystem disk volume: the root disk's at /var/lib/berth/disk, each data disk's at
/var/lib/berth/disks/<name> (common/disks.DefaultDir). */}}
{{- define "berth.diskMounts" -}}
- name: disk
  mountPath: /var/lib/berth/disk
  subPath: berth
{{- range fromJsonArray (include "berth.dataDisks" .) }}
{{- if eq .volumeMode "Filesystem" }}
- name: {{ .volume }}
  mountPath: /var/lib/berth/disks/{{ .name }}
  subPath: berth
{{- end }}
{{- end }}
{{- end -}}

{{/* berth.diskDevices: the volumeDevices of the Block data disks, /dev/berth/<name>
(common/disks.BlockDir); empty when there are none. */}}
{{- define "berth.diskDevices" -}}
{{- range fromJsonArray (include "berth.dataDisks" .) }}
{{- if eq .volumeMode "Block" }}
- name: {{ .volume }}
  devicePath: /dev/berth/{{ .name }}
{{- end }}
{{- end }}
{{- end -}}

{{/* berth.dataDisksEnvVars: DATA_DISKS and DATA_DISK_DIR, for image-fetch and vm; nothing when the
VM has no data disk. */}}
{{- define "berth.dataDisksEnvVars" -}}
{{- if .vm.disks -}}
- name: DATA_DISKS
  value: {{ include "berth.env" (include "berth.dataDisksEnv" .) }}
- name: DATA_DISK_DIR
  value: /var/lib/berth/disks
{{- end }}
{{- end -}}
