{{/* berth.container.vm: the pod's one container: vmm supervising QEMU. The argument is a VM context
(see _helpers.tpl); statefulset.yaml includes it with nindent 8. */}}
{{- define "berth.container.vm" -}}
{{- $ctx := . -}}
{{- $vm := .vm -}}
{{- $hostPathCache := eq $vm.imageCache.mode "hostPath" -}}
{{- $vmPrivileged := include "berth.vmPrivileged" $ctx -}}
{{- /* resources: vm.resources if set, else cpuRequestPerCPU per CPU and memory plus
memoryOverhead (requested, and the memory limit); either way one of each device the VM takes
from a device plugin (kvm.resourceName, tun.mode devicePlugin). */ -}}
{{- $memMi := add (include "berth.mebibytes" $vm.memory) (include "berth.mebibytes" $vm.memoryOverhead) -}}
{{- $cpuReq := mul (int $vm.cpus) (include "berth.millicpu" $vm.cpuRequestPerCPU) -}}
{{- $resources := $vm.resources | default (dict "requests" (dict "cpu" (printf "%dm" $cpuReq) "memory" (printf "%dMi" $memMi)) "limits" (dict "memory" (printf "%dMi" $memMi))) -}}
{{- $resources = deepCopy $resources -}}
{{- $devices := dict -}}
{{- if $vm.kvm.resourceName }}{{- $_ := set $devices $vm.kvm.resourceName "1" }}{{- end -}}
{{- if eq $vm.tun.mode "devicePlugin" }}{{- $_ := set $devices $vm.tun.resourceName "1" }}{{- end -}}
{{- if $devices -}}
{{- $_ := set $resources "limits" (merge (deepCopy ($resources.limits | default dict)) $devices) -}}
{{- $_ := set $resources "requests" (merge (deepCopy ($resources.requests | default dict)) $devices) -}}
{{- end -}}
# 5. vm: vmm runs and supervises qemu-system-x86_64; its stdout is the guest's serial console.
- name: vm
  image: {{ include "berth.image" (merge (dict "component" "vmm") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "vmm") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  env:
    {{- include "berth.commonEnv" (merge (dict "stage" "vmm") $ctx) | nindent 4 }}
    - name: VM_CPUS
      value: {{ include "berth.env" $vm.cpus }}
    - name: VM_MEMORY
      value: {{ include "berth.env" $vm.memory }}
    - name: VM_IP
      value: {{ include "berth.env" $vm.vmIP }}
    - name: ACCEL
      value: {{ include "berth.env" $vm.accel }}
    - name: NO_VNC
      value: {{ include "berth.env" $vm.noVNC }}
    {{- if not $vm.noVNC }}
    - name: VNC_LISTEN
      value: {{ include "berth.env" $vm.vnc.listen }}
    {{- if $vm.vnc.passwordSecret }}
    - name: VNC_PASSWORD_FILE
      value: /etc/berth/vnc/password
    {{- end }}
    {{- end }}
    {{- if $vm.readyTCPPort }}
    - name: READY_TCP_PORT
      value: {{ include "berth.env" $vm.readyTCPPort }}
    {{- end }}
    {{- if $vm.metrics.enabled }}
    - name: METRICS_PORT
      value: {{ include "berth.env" $vm.metrics.port }}
    {{- end }}
    - name: SHUTDOWN_TIMEOUT
      value: {{ include "berth.env" $vm.shutdownTimeout }}
    - name: READY_WHEN
      value: {{ include "berth.env" $vm.readyWhen }}
    - name: GUEST_AGENT
      value: {{ include "berth.env" $vm.guestAgent.enabled }}
    - name: ON_POWEROFF
      value: {{ include "berth.env" $vm.onPoweroff }}
    - name: ON_PANIC
      value: {{ include "berth.env" $vm.onPanic }}
    - name: WATCHDOG
      value: {{ include "berth.env" $vm.watchdog }}
    - name: FIRMWARE
      value: {{ include "berth.env" $vm.firmware }}
    - name: SECURE_BOOT
      value: {{ include "berth.env" $vm.secureBoot }}
    - name: TPM
      value: {{ include "berth.env" $vm.tpm }}
    - name: DISK_DIR
      value: /var/lib/berth/disk
    - name: DISK_SIZE
      value: {{ include "berth.env" $vm.diskSize }}
    {{- with include "berth.dataDisksEnvVars" $ctx }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with include "berth.cdromsEnvVars" $ctx }}
    {{- . | nindent 4 }}
    {{- end }}
    - name: IMAGE_DIR
      value: /var/lib/berth/images
    - name: TMPDIR
      value: /tmp
    {{- with $vm.stages.vmm.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $vm.console.serial.interactive }}
  # kubectl attach -it: the terminal is QEMU's stdio, the guest's first serial port.
  stdin: true
  tty: true
  {{- end }}
  {{- if or (not $vm.noVNC) $vm.metrics.enabled }}
  ports:
    {{- if not $vm.noVNC }}
    - name: vnc
      containerPort: 5900
      protocol: TCP
    {{- end }}
    {{- if $vm.metrics.enabled }}
    - name: metrics
      containerPort: {{ int $vm.metrics.port }}
      protocol: TCP
    {{- end }}
  {{- end }}
  readinessProbe:
    exec:
      command: [vmm, probe, ready]
    periodSeconds: 2
    timeoutSeconds: 5
    failureThreshold: 1
  livenessProbe:
    exec:
      command: [vmm, probe, live]
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 6
  securityContext:
    {{- if $vmPrivileged }}
    # Opt-in (kvm.privileged or tun.mode privileged): the node's /dev/kvm and /dev/net/tun.
    privileged: true
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: true
    readOnlyRootFilesystem: true
    {{- else }}
    {{- include "berth.nonRootSecurityContext" $ctx | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml $resources | nindent 4 }}
  volumeMounts:
    - name: run
      mountPath: /run/berth
    - name: images
      mountPath: /var/lib/berth/images
      {{- if $hostPathCache }}
      subPath: berth-images
      {{- end }}
      readOnly: true
    {{- include "berth.diskMounts" $ctx | nindent 4 }}
    - name: tmp
      mountPath: /tmp
    {{- if and $vm.vnc.passwordSecret (not $vm.noVNC) }}
    - name: vnc-password
      mountPath: /etc/berth/vnc
      readOnly: true
    {{- end }}
  {{- with include "berth.diskDevices" $ctx }}
  volumeDevices:
    {{- . | nindent 4 }}
  {{- end }}
{{- end -}}
