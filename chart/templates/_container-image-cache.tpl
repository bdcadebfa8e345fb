{{/* berth.container.image-cache: the init container that hands the node's image cache
(imageCache.mode hostPath) to the VM's uid; rendered only in that mode, between net-setup and
image-fetch. The argument is a VM context (see _helpers.tpl); statefulset.yaml includes it with
nindent 8. */}}
{{- define "berth.container.image-cache" -}}
{{- $ctx := . -}}
{{- $uid := int .vm.vmUID -}}
# The node's cache is Berth's own subdirectory berth-images of imageCache.hostPath, never
# the directory the user named: the kubelet makes it (subPath: created as root inside the
# volume; a symlink leading out of the volume is refused), and this step hands only it to
# the VM's uid so that image-fetch runs unprivileged (coreutils' install, in the
# image-fetch image). imageCache.hostPath itself is never re-owned.
- name: image-cache
  image: {{ include "berth.image" (merge (dict "component" "imageFetch") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "imageFetch") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  command: [install, -d, -o, {{ $uid | quote }}, -g, {{ $uid | quote }}, -m, "0755", /var/lib/berth/images]
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
      add: [CHOWN, FOWNER]
  volumeMounts:
    - name: images
      mountPath: /var/lib/berth/images
      subPath: berth-images
{{- end -}}
