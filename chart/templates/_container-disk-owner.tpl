{{/* berth.container.disk-owner: the init container that hands Berth's own directory on each disk
volume (subPath berth, which the kubelet creates as root) to the VM's uid, before image-fetch. The
argument is a VM context (see _helpers.tpl); statefulset.yaml includes it with nindent 8. */}}
{{- define "berth.container.disk-owner" -}}
{{- $ctx := . -}}
{{- $uid := int .vm.vmUID -}}
{{- $dirs := list "/var/lib/berth/disk" -}}
{{- range fromJsonArray (include "berth.dataDisks" $ctx) -}}
{{- if eq .volumeMode "Filesystem" -}}{{- $dirs = append $dirs (printf "/var/lib/berth/disks/%s" .name) -}}{{- end -}}
{{- end -}}
# A volume's root may be root-owned 0755 (a hostPath PV, NFS with root_squash, a CSI
# driver without fsGroup support): this step hands the VM's uid only Berth's directory
# `berth` on each Filesystem disk volume (subPath: the kubelet creates it as root), with
# coreutils' install from the image-fetch image; the volume's root is never re-owned.
- name: disk-owner
  image: {{ include "berth.image" (merge (dict "component" "imageFetch") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "imageFetch") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  command: [install, -d, -o, {{ $uid | quote }}, -g, {{ $uid | quote }}, -m, "0750", {{ join ", " $dirs }}]
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
      add: [CHOWN, FOWNER]
  volumeMounts:
    {{- include "berth.diskMounts" $ctx | nindent 4 }}
{{- end -}}
