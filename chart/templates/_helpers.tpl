{{/*
Helpers shared by every template. A VM is always handled as a "context" dict:
  {root: $, name: <key in .Values.vms>, vm: <vmDefaults merged with the VM's values>}
which each template builds the same way, so every template sees the same merged values:
  {{- range $name := fromJsonArray (include "berth.vmNames" $) }}
  {{- $vm := fromJson (include "berth.vmValues" (dict "root" $ "name" $name)) }}
  {{- $ctx := dict "root" $ "name" $name "vm" $vm }}
*/}}

{{/* berth.merge: deep merge of dict .src over dict .dst, returned as JSON. Maps merge key by key;
scalars and lists replace; unlike sprig's mergeOverwrite, false, 0 and "" do replace (so a VM can
turn a default off); null keeps the default. */}}
{{- define "berth.merge" -}}
{{- $dst := deepCopy .dst -}}
{{- range $k, $v := .src -}}
{{- if kindIs "invalid" $v -}}
{{- else if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- $_ := set $dst $k (fromJson (include "berth.merge" (dict "dst" (get $dst $k) "src" $v))) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- toJson $dst -}}
{{- end -}}

{{/* berth.vmNames: the VMs' names (the keys of .Values.vms), sorted, as a JSON array. */}}
{{- define "berth.vmNames" -}}
{{- keys (.Values.vms | default dict) | sortAlpha | toJson -}}
{{- end -}}

{{/* berth.vmValues: dict root name → that VM's values, vmDefaults merged with vms.<name>
(berth.merge), as JSON. */}}
{{- define "berth.vmValues" -}}
{{- $spec := get .root.Values.vms .name | default dict -}}
{{- include "berth.merge" (dict "dst" .root.Values.vmDefaults "src" $spec) -}}
{{- end -}}

{{/* berth.fullname: the StatefulSet's name for a VM: <release>-<vm> when that is at most 52
characters (a StatefulSet's pods carry a controller-revision-hash label, <name>-<10 characters>,
at most 63), else its first 43 characters, "-" and the first 8 hex digits of the sha256 of the
whole <release>-<vm>: two VMs whose names differ only past the cut get two names (and two PVCs).
Names that fit are the names earlier versions of the chart gave. */}}
{{- define "berth.fullname" -}}
{{- $full := printf "%s-%s" .root.Release.Name .name -}}
{{- if le (len $full) 52 -}}
{{- $full -}}
{{- else -}}
{{- printf "%s-%s" ($full | trunc 43 | trimSuffix "-") (sha256sum $full | trunc 8) -}}
{{- end -}}
{{- end -}}

{{/* berth.testName: the helm test Service and Pod of a VM. */}}
{{- define "berth.testName" -}}
{{- printf "%s-test" (include "berth.fullname" .) -}}
{{- end -}}

{{/* berth.names: fail naming both VMs when two VMs would render an object of the same kind and
name (one would silently replace the other), naming both disks when two disks would use one PVC
(an existingClaim that is another disk's), or when a VM's pod would carry a label the chart sets. */}}
{{- define "berth.names" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" .Release.Name) -}}
{{- fail (printf "berth: the release name %q begins every StatefulSet, pod and Service name: it must start with a letter and hold only a-z, 0-9 and '-'" .Release.Name) -}}
{{- end -}}
{{- $seen := dict -}}
{{- $claims := dict -}}{{- /* PVC name → the disk that uses it */ -}}
{{- range $name := fromJsonArray (include "berth.vmNames" .) -}}
{{- $vm := fromJson (include "berth.vmValues" (dict "root" $ "name" $name)) -}}
{{- $ctx := dict "root" $ "name" $name "vm" $vm -}}
{{- $full := include "berth.fullname" $ctx -}}
{{- $objs := list (printf "StatefulSet %s" $full) (printf "PersistentVolumeClaim disk-%s-0" $full) -}}
{{- if or (not $vm.userDataConfigMap) (not $vm.metaDataConfigMap) -}}{{- $objs = append $objs (printf "ConfigMap %s-seed" $full) -}}{{- end -}}
{{- if $vm.service.enabled -}}{{- $objs = append $objs (printf "Service %s" $full) -}}{{- end -}}
{{- if $.Values.tests.enabled -}}{{- $objs = concat $objs (list (printf "Service %s" (include "berth.testName" $ctx)) (printf "Pod %s" (include "berth.testName" $ctx))) -}}{{- end -}}
{{- with get $claims (printf "disk-%s-0" $full) -}}
{{- fail (printf "berth: %s and vms.%s.diskSize would both use PersistentVolumeClaim disk-%s-0 (one volume, two disks): give each disk its own claim" . $name $full) -}}
{{- end -}}
{{- $_ := set $claims (printf "disk-%s-0" $full) (printf "vms.%s.diskSize" $name) -}}
{{- range $d := fromJsonArray (include "berth.dataDisks" $ctx) -}}
{{- if not $d.existingClaim -}}{{- $objs = append $objs (printf "PersistentVolumeClaim %s" $d.claim) -}}{{- end -}}
{{- $user := printf "vms.%s.disks[%d] (%s)" $name (int $d.index) $d.name -}}
{{- with get $claims $d.claim -}}
{{- fail (printf "berth: %s and %s would both use PersistentVolumeClaim %s (one volume, two disks): give each disk its own claim" . $user $d.claim) -}}
{{- end -}}
{{- $_ := set $claims $d.claim $user -}}
{{- end -}}
{{- range $o := $objs -}}
{{- with get $seen $o -}}
{{- fail (printf "berth: vms.%s and vms.%s would both render %s (one VM would replace the other): rename one of them" . $name $o) -}}
{{- end -}}
{{- $_ := set $seen $o $name -}}
{{- end -}}
{{- $keyRe := "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" -}}
{{- range $what, $m := dict "podLabels" $vm.podLabels "nodeSelector" $vm.nodeSelector "podAnnotations" $vm.podAnnotations "service.annotations" $vm.service.annotations -}}
{{- range $k, $_ := $m -}}
{{- if or (not (regexMatch $keyRe $k)) (gt (len (regexReplaceAll "/.*" $k "")) 253) -}}
{{- fail (printf "berth: vms.%s.%s key %q is not a Kubernetes key: [prefix/]name, the name at most 63 characters of alphanumerics, '-', '_' and '.', the prefix a DNS subdomain" $name $what $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if hasKey ($vm.podAnnotations | default dict) "checksum/seed" -}}
{{- fail (printf "berth: vms.%s.podAnnotations.checksum/seed is the annotation the chart sets itself (a changed seed restarts the VM): use another key" $name) -}}
{{- end -}}
{{- range $k, $v := $vm.podLabels -}}
{{- if or (hasPrefix "app.kubernetes.io/" $k) (eq $k "helm.sh/chart") (hasPrefix "berth-vm.github.io/" $k) -}}
{{- fail (printf "berth: vms.%s.podLabels.%s is a label the chart sets itself (app.kubernetes.io/*, helm.sh/chart, berth-vm.github.io/*): use another key" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "berth.serviceAccountName" -}}
{{- printf "%s-berth" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . | quote }}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end -}}

{{/* Selector labels of one VM's pod (immutable in the StatefulSet: never change them). */}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
berth-vm.github.io/vm: {{ .name | quote }}
{{- end -}}

{{- define "berth.vmLabels" -}}
{{ include "berth.labels" .root }}
app.kubernetes.io/component: vm
berth-vm.github.io/vm: {{ .name | quote }}
{{- end -}}

{{/* berth.image: dict root vm component → the image reference. The VM's images.<component>
fields override the release's; a digest wins over the tag; an empty tag is the appVersion. */}}
{{- define "berth.image" -}}
{{- $img := fromJson (include "berth.imageValues" .) -}}
{{- $ref := $img.repository -}}
{{- if $img.registry -}}{{- $ref = printf "%s/%s" $img.registry $img.repository -}}{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $ref $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString ($img.tag | default .root.Chart.AppVersion)) -}}
{{- end -}}
{{- end -}}

{{- define "berth.imageValues" -}}
{{- $global := get .root.Values.images .component -}}
{{- $own := get (.vm.images | default dict) .component | default dict -}}
{{- include "berth.merge" (dict "dst" $global "src" $own) -}}
{{- end -}}

{{- define "berth.pullPolicy" -}}
{{- (fromJson (include "berth.imageValues" .)).pullPolicy -}}
{{- end -}}

{{/* berth.bytes: a size as common/quantity reads it (bytes, or Ki, Mi, Gi, Ti; the schema allows
nothing else) → bytes. */}}
{{- define "berth.bytes" -}}
{{- $q := toString . -}}
{{- $n := regexFind "^[0-9]+" $q | int64 -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $q) $q -}}
{{- $m := get (dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776) $unit -}}
{{- if not $m -}}{{- fail (printf "berth: cannot read the size %q (bytes, or Ki, Mi, Gi, Ti)" $q) -}}{{- end -}}
{{- mul $n $m -}}
{{- end -}}

{{/* berth.mebibytes: a size → whole MiB, rounded up. */}}
{{- define "berth.mebibytes" -}}
{{- div (add (include "berth.bytes" . | int64) 1048575) 1048576 -}}
{{- end -}}

{{/* berth.env: an env value as the kubelet must pass it: every "$" doubled (the kubelet reads
$(NAME) in env values as a reference and "$$" as "$"), then JSON-quoted (a valid YAML string
whatever it holds). */}}
{{- define "berth.env" -}}
{{- toString . | replace "$" "$$" | toJson -}}
{{- end -}}

{{/* berth.millicpu: a CPU quantity ("100m", "1", "0.5") → millicores. */}}
{{- define "berth.millicpu" -}}
{{- $q := toString . -}}
{{- if hasSuffix "m" $q -}}{{- trimSuffix "m" $q | int64 -}}
{{- else -}}{{- mulf (float64 $q) 1000 | ceil | int64 -}}
{{- end -}}
{{- end -}}

{{/* The common environment of every stage. */}}
{{- define "berth.commonEnv" -}}
- name: VM_NAME
  value: {{ include "berth.env" .name }}
- name: BERTH_RUN_DIR
  value: /run/berth
- name: LOG_FORMAT
  value: {{ include "berth.env" .vm.logFormat }}
- name: LOG_LEVEL
  value: {{ include "berth.env" ((get .vm.stages .stage).logLevel | default .vm.logLevel) }}
{{- end -}}

{{/* The securityContext of an unprivileged, non-root stage. */}}
{{- define "berth.nonRootSecurityContext" -}}
runAsUser: {{ int .vm.vmUID }}
runAsGroup: {{ int .vm.vmUID }}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* berth.vmPrivileged: "true" when the vm container runs privileged (an explicit opt-in). */}}
{{- define "berth.vmPrivileged" -}}
{{- if or .vm.kvm.privileged (eq .vm.tun.mode "privileged") -}}true{{- end -}}
{{- end -}}

{{/* berth.checks: fail early, with a clear message, on values the schema cannot catch. */}}
{{- define "berth.checks" -}}
{{- /* image.source may be empty (IMG_SOURCE "" and DISK_BLANK=true: a blank pet disk of diskSize)
with an installer ISO to install an OS from, or once the disk exists (the installed disk, the ISO
detached: image-fetch keeps a disk made blank and refuses one made on a base). lookup sees the PVC
under helm install and upgrade, not under helm template. */ -}}
{{- if not .vm.image.source -}}
{{- $pvc := printf "disk-%s-0" (include "berth.fullname" .) -}}
{{- if and (not (.vm.cdrom | default dict).source) (not (lookup "v1" "PersistentVolumeClaim" .root.Release.Namespace $pvc)) -}}
{{- fail (printf "berth: vms.%s.image.source is required (an http(s) URL of a qcow2 or raw image); it may be empty only with cdrom.source set (a blank disk of diskSize, an OS installed on it from that ISO) or once the VM's disk exists (PVC %s, seen by helm install and upgrade, not by helm template)" .name $pvc) -}}
{{- end -}}
{{- range $k := list "sha256" "target" -}}
{{- if get $.vm.image $k -}}
{{- fail (printf "berth: vms.%s.image.%s is set, but image.source is empty (a blank pet disk has no base image): remove image.%s, or set image.source" $.name $k $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := include "berth.cdroms" . -}}
{{- if and (not (hasPrefix "127." .vm.vnc.listen)) (not .vm.vnc.passwordSecret) (not .vm.noVNC) -}}
{{- fail (printf "berth: vms.%s.vnc.listen %s serves VNC beyond the pod's loopback: set vms.%s.vnc.passwordSecret" .name .vm.vnc.listen .name) -}}
{{- end -}}
{{- $mem := include "berth.bytes" .vm.memory | int64 -}}
{{- if or (lt $mem 134217728) (gt $mem 4398046511104) (ne (mod $mem 1048576) 0) -}}
{{- fail (printf "berth: vms.%s.memory %s must be a whole number of MiB from 128Mi to 4Ti (e.g. 1Gi, 1536Mi)" .name .vm.memory) -}}
{{- end -}}
{{- if ne (mod (include "berth.bytes" .vm.diskSize | int64) 512) 0 -}}
{{- fail (printf "berth: vms.%s.diskSize %s must be a multiple of 512 bytes (e.g. 20Gi)" .name .vm.diskSize) -}}
{{- end -}}
{{- if and .vm.secureBoot (ne .vm.firmware "uefi") -}}
{{- fail (printf "berth: vms.%s.secureBoot needs firmware: uefi (it is %s): Secure Boot is a UEFI feature" .name .vm.firmware) -}}
{{- end -}}
{{- if and (eq .vm.readyWhen "tcp") (not .vm.readyTCPPort) -}}
{{- fail (printf "berth: vms.%s.readyWhen tcp needs readyTCPPort (1 to 65535; it is 0): set it, or readyWhen: lease" .name) -}}
{{- end -}}
{{- if and (eq .vm.readyWhen "agent") (not .vm.guestAgent.enabled) -}}
{{- fail (printf "berth: vms.%s.readyWhen agent needs the guest agent's channel: guestAgent.enabled true (it is false), or readyWhen: lease or tcp" .name) -}}
{{- end -}}
{{- if and (eq (int .vm.readyTCPPort) 5900) (not .vm.noVNC) -}}
{{- fail (printf "berth: vms.%s.readyTCPPort 5900 is QEMU's VNC port in the pod, not the guest's (the probe would never reach the guest): use another port, or noVNC: true" .name) -}}
{{- end -}}
{{- if and .vm.metrics.enabled (eq (int .vm.readyTCPPort) (int .vm.metrics.port)) -}}
{{- fail (printf "berth: vms.%s.readyTCPPort %d is metrics.port, vmm's in the pod, not the guest's (the probe would never reach the guest): use another port" .name (int .vm.readyTCPPort)) -}}
{{- end -}}
{{- $size := 0 -}}
{{- if not .vm.userDataConfigMap -}}{{- $size = add $size (len (.vm.userData | default "")) -}}{{- end -}}
{{- if not .vm.metaDataConfigMap -}}{{- $size = add $size (len (toJson (.vm.metaData | default dict))) -}}{{- end -}}
{{- if gt (int64 $size) 1048576 -}}
{{- fail (printf "berth: vms.%s.userData (with metaData) is %d bytes, over the 1 MiB (1048576 bytes) a ConfigMap holds: put it in an existing ConfigMap (userDataConfigMap) or shrink it" .name $size) -}}
{{- end -}}
{{- $ports := dict -}}
{{- range .vm.service.ports -}}
{{- if not (regexMatch "[a-z]" .name) -}}
{{- fail (printf "berth: vms.%s.service.ports name %q needs a letter (Kubernetes' port names are IANA service names)" $.name .name) -}}
{{- end -}}
{{- range $k := list (printf "name %s" .name) (printf "port %v/%s" .port (.protocol | default "TCP")) -}}
{{- if hasKey $ports $k -}}
{{- fail (printf "berth: vms.%s.service.ports lists %s twice" $.name $k) -}}
{{- end -}}
{{- $_ := set $ports $k true -}}
{{- end -}}
{{- if and .nodePort (eq $.vm.service.type "ClusterIP") -}}
{{- fail (printf "berth: vms.%s.service.ports %s: nodePort needs service.type NodePort or LoadBalancer (it is ClusterIP)" $.name .name) -}}
{{- end -}}
{{- end -}}
{{- if eq .vm.vmIP .vm.vmGW -}}
{{- fail (printf "berth: vms.%s.vmIP and vmGW are both %s" .name .vm.vmIP) -}}
{{- end -}}
{{- if .vm.console.web.enabled -}}
{{- if .vm.noVNC -}}
{{- fail (printf "berth: vms.%s.console.web.enabled shows QEMU's VNC in a browser, but vms.%s.noVNC is true (QEMU has no VNC): turn one of them off" .name .name) -}}
{{- end -}}
{{- if not (or (hasPrefix "127." .vm.vnc.listen) (eq .vm.vnc.listen "0.0.0.0")) -}}
{{- fail (printf "berth: vms.%s.console.web.enabled reaches VNC on the pod's loopback, but vms.%s.vnc.listen is %s: use 127.0.0.1 (or 0.0.0.0)" .name .name .vm.vnc.listen) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* berth.vncTarget: where the web console reaches QEMU's VNC from inside the pod. */}}
{{- define "berth.vncTarget" -}}
{{- if hasPrefix "127." .vm.vnc.listen -}}{{ .vm.vnc.listen }}{{- else -}}127.0.0.1{{- end -}}:5900
{{- end -}}
