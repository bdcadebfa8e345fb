{{/* berth.container.dnsmasq: the DHCP sidecar (a native sidecar: an init container with
restartPolicy Always). The argument is a VM context (see _helpers.tpl); statefulset.yaml
includes it with nindent 8. */}}
{{- define "berth.container.dnsmasq" -}}
{{- $ctx := . -}}
{{- $vm := .vm -}}
# 4. dnsmasq: native sidecar (starts before the vm container, runs beside it), DHCP on br0.
- name: dnsmasq
  image: {{ include "berth.image" (merge (dict "component" "dnsmasq") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "dnsmasq") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  restartPolicy: Always
  # --log-facility=-: logs (and log-dhcp's lines) to stderr, i.e. `kubectl logs -c dnsmasq`;
  # without it dnsmasq logs to syslog, which a container does not have.
  command: [dnsmasq, --keep-in-foreground, --log-facility=-, --conf-file=/run/berth/dnsmasq.conf]
  {{- with $vm.stages.dnsmasq.extraEnv }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    # DHCP: bind UDP 67 (NET_BIND_SERVICE), ARP-cache injection for the reply (NET_ADMIN:
    # dnsmasq refuses DHCP without it); dnsmasq starts as root and drops to nobody (SETUID,
    # SETGID), keeping only NET_ADMIN. No NET_RAW: the config says no-ping (netsetup/e2e
    # TestDnsmasqCapabilities serves a lease with exactly these).
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
      add: [NET_ADMIN, NET_BIND_SERVICE, SETUID, SETGID]
  resources:
    requests:
      cpu: 10m
      memory: 8Mi
    limits:
      memory: 32Mi
  volumeMounts:
    - name: run
      mountPath: /run/berth
{{- end -}}
