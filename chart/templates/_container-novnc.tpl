{{/* berth.container.novnc: the web console sidecar (console.web.enabled; a native sidecar). The
argument is a VM context (see _helpers.tpl); statefulset.yaml includes it with nindent 8. */}}
{{- define "berth.container.novnc" -}}
{{- $ctx := . -}}
{{- $vm := .vm -}}
# novnc, optional (console.web.enabled): native sidecar, so it keeps showing the screen while the
# guest powers down and stops after the vm container. websockify serves noVNC on the pod's
# loopback only (kubectl port-forward pod/<vm>-0 6080) and bridges it to QEMU's VNC; only
# pages from `origins` may open the WebSocket. No ports on the pod IP, no volumes.
- name: novnc
  image: {{ include "berth.image" (merge (dict "component" "novnc") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "novnc") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  restartPolicy: Always
  command:
    - /usr/bin/python3.11
    - -m
    - websockify
    - --web
    - /usr/share/novnc
    - --auth-plugin
    - ExpectOrigin
    - --auth-source
    - {{ join " " $vm.console.web.origins | quote }}
    - 127.0.0.1:6080
    - {{ include "berth.vncTarget" $ctx | quote }}
  securityContext:
    runAsUser: 65534
    runAsGroup: 65534
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
  resources:
    requests:
      cpu: 10m
      memory: 32Mi
    limits:
      memory: 128Mi
{{- end -}}
