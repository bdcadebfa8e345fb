{{/* berth.container.net-setup: the first init container: net-setup makes the pod's network for the
VM (bridge, tap, NAT, dnsmasq.conf, the tun node). The argument is a VM context (see
_helpers.tpl); statefulset.yaml includes it with nindent 8. */}}
{{- define "berth.container.net-setup" -}}
{{- $ctx := . -}}
{{- $vm := .vm -}}
{{- $uid := int $vm.vmUID -}}
# 1. net-setup: bridge, tap owned by the VM's uid, NAT, dnsmasq.conf, the tun node.
- name: net-setup
  image: {{ include "berth.image" (merge (dict "component" "netSetup") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "netSetup") $ctx) }}
  # The stages write their one-line failure to /dev/termination-log; anything that dies
  # without writing it (a crash, dnsmasq, install) shows its last log lines instead.
  terminationMessagePolicy: FallbackToLogsOnError
  env:
    {{- include "berth.commonEnv" (merge (dict "stage" "netSetup") $ctx) | nindent 4 }}
    - name: VM_IP
      value: {{ include "berth.env" $vm.vmIP }}
    - name: VM_GW
      value: {{ include "berth.env" $vm.vmGW }}
    - name: NO_VNC
      value: {{ include "berth.env" $vm.noVNC }}
    {{- if $vm.metrics.enabled }}
    # vmm's metrics port: TCP to the pod IP on it stays in the pod (the VM loses it).
    - name: METRICS_PORT
      value: {{ include "berth.env" $vm.metrics.port }}
    {{- end }}
    - name: TAP_UID
      value: {{ include "berth.env" $uid }}
    - name: TAP_GID
      value: {{ include "berth.env" $uid }}
    # iptables-legacy's lock file, on a writable volume (the root filesystem is read-only).
    - name: XTABLES_LOCKFILE
      value: /tmp/xtables.lock
    {{- with $vm.stages.netSetup.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    readOnlyRootFilesystem: true
    {{- if eq $vm.ipForward "privileged" }}
    # ip_forward=1 in the pod's network namespace: /proc/sys is read-only unless privileged.
    # This container exits before the VM starts. ipForward: sysctl avoids it.
    privileged: true
    allowPrivilegeEscalation: true
    {{- else }}
    allowPrivilegeEscalation: false
    capabilities:
      drop: [ALL]
      # NET_ADMIN: links, addresses, the persistent tap, iptables; NET_RAW: iptables-legacy's
      # raw socket; MKNOD, CHOWN, FOWNER: the tun node in the run volume, owned by the VM's
      # uid (net-setup opens it to make the tap when it has no /dev/net/tun itself).
      add: [NET_ADMIN, NET_RAW, MKNOD, CHOWN, FOWNER]
    {{- end }}
  volumeMounts:
    - name: run
      mountPath: /run/berth
    - name: tmp
      mountPath: /tmp
{{- end -}}
