{{/*
Helpers shared by every template. A VM is always handled as a "context" dict:
  {root: $, name: <key in .Values.vms>, vm: <vmDefaults merged with the VM's values>}
built by berth.vmContext, so every template sees the same merged values.
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

{{/* berth.vms: the list of VM contexts, sorted by name, as JSON {"items": [...]}. */}}
{{- define "berth.vmNames" -}}
{{- keys (.Values.vms | default dict) | sortAlpha | toJson -}}
{{- end -}}

{{/* berth.vmContext: dict root name → the merged VM values (JSON). */}}
{{- define "berth.vmValues" -}}
{{- $spec := get .root.Values.vms .name | default dict -}}
{{- include "berth.merge" (dict "dst" .root.Values.vmDefaults "src" $spec) -}}
{{- end -}}

{{/* berth.fullname: the StatefulSet's name for a VM: <release>-<vm>, at most 52 characters (a
StatefulSet's pods carry a controller-revision-hash label built from the name). */}}
{{- define "berth.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "berth.serviceAccountName" -}}
{{- printf "%s-berth" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . }}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one VM's pod (immutable in the StatefulSet: never change them). */}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .root.Release.Name }}
berth-vm.github.io/vm: {{ .name }}
{{- end -}}

{{- define "berth.vmLabels" -}}
{{ include "berth.labels" .root }}
app.kubernetes.io/component: vm
berth-vm.github.io/vm: {{ .name }}
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

{{/* berth.mebibytes: a quantity (Mi, Gi, M, G, Ki, K or plain bytes) → whole MiB, rounded up. */}}
{{- define "berth.mebibytes" -}}
{{- $q := toString . -}}
{{- $n := regexFind "^[0-9]+" $q | int64 -}}
{{- $unit := trimPrefix (toString $n) $q -}}
{{- $bytes := 0 -}}
{{- if eq $unit "Gi" -}}{{- $bytes = mul $n 1073741824 -}}
{{- else if eq $unit "Mi" -}}{{- $bytes = mul $n 1048576 -}}
{{- else if eq $unit "Ki" -}}{{- $bytes = mul $n 1024 -}}
{{- else if eq $unit "G" -}}{{- $bytes = mul $n 1000000000 -}}
{{- else if eq $unit "M" -}}{{- $bytes = mul $n 1000000 -}}
{{- else if eq $unit "K" -}}{{- $bytes = mul $n 1000 -}}
{{- else if eq $unit "" -}}{{- $bytes = $n -}}
{{- else -}}{{- fail (printf "berth: cannot read the quantity %q (use Mi, Gi, M or G)" $q) -}}
{{- end -}}
{{- div (add $bytes 1048575) 1048576 -}}
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
  value: {{ .name | quote }}
- name: BERTH_RUN_DIR
  value: /run/berth
- name: LOG_FORMAT
  value: {{ .vm.logFormat | quote }}
- name: LOG_LEVEL
  value: {{ (get .vm.stages .stage).logLevel | default .vm.logLevel | quote }}
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
{{- if not .vm.image.source -}}
{{- fail (printf "berth: vms.%s.image.source is required (an http(s) URL of a qcow2 or raw image)" .name) -}}
{{- end -}}
{{- if and (not (hasPrefix "127." .vm.vnc.listen)) (not .vm.vnc.passwordSecret) (not .vm.noVNC) -}}
{{- fail (printf "berth: vms.%s.vnc.listen %s serves VNC beyond the pod's loopback: set vms.%s.vnc.passwordSecret" .name .vm.vnc.listen .name) -}}
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
