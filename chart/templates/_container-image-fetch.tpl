{{/* berth.container.image-fetch: the init container that fetches the base image and the ISOs
(CDROMS, _cdroms.tpl) into the cache and makes the pet overlay on the disk (a blank disk when
image.source is empty). The argument is a VM context (see _helpers.tpl); statefulset.yaml includes
it with nindent 8. */}}
{{- define "berth.container.image-fetch" -}}
{{- $ctx := . -}}
{{- $vm := .vm -}}
{{- $hostPathCache := eq $vm.imageCache.mode "hostPath" -}}
# 2. image-fetch: the base image into the cache, the pet overlay onto the disk.
- name: image-fetch
  image: {{ include "berth.image" (merge (dict "component" "imageFetch") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "imageFetch") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  env:
    {{- include "berth.commonEnv" (merge (dict "stage" "imageFetch") $ctx) | nindent 4 }}
    - name: IMG_SOURCE
      value: {{ include "berth.env" $vm.image.source }}
    {{- if not $vm.image.source }}
    # image.source empty: a blank pet disk of DISK_SIZE without a base image, to install an OS
    # on from the ISO (a disk made blank is never paired with a base).
    - name: DISK_BLANK
      value: "true"
    {{- end }}
    {{- with $vm.image.target }}
    - name: IMG_TARGET
      value: {{ include "berth.env" . }}
    {{- end }}
    {{- with $vm.image.sha256 }}
    - name: IMG_SHA256
      value: {{ include "berth.env" . }}
    {{- end }}
    {{- with include "berth.cdromsEnvVars" $ctx }}
    {{- . | nindent 4 }}
    {{- end }}
    - name: IMAGE_DIR
      value: /var/lib/berth/images
    - name: DISK_DIR
      value: /var/lib/berth/disk
    - name: DISK_SIZE
      value: {{ include "berth.env" $vm.diskSize }}
    - name: DISK_LEGACY_DIR
      value: /var/lib/berth/volume
    {{- with include "berth.dataDisksEnvVars" $ctx }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- range $key, $name := dict "attempts" "IMG_FETCH_ATTEMPTS" "backoff" "IMG_FETCH_BACKOFF" "maxBackoff" "IMG_FETCH_MAX_BACKOFF" "stallTimeout" "IMG_FETCH_STALL_TIMEOUT" "minRate" "IMG_FETCH_MIN_RATE" "rateWindow" "IMG_FETCH_RATE_WINDOW" "deadline" "IMG_FETCH_DEADLINE" }}
    {{- if hasKey ($vm.image.fetch | default dict) $key }}
    - name: {{ $name }}
      value: {{ include "berth.env" (toString (index $vm.image.fetch $key)) }}
    {{- end }}
    {{- end }}
    - name: TMPDIR
      value: /tmp
    {{- with $vm.stages.imageFetch.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  securityContext:
    {{- include "berth.nonRootSecurityContext" $ctx | nindent 4 }}
  volumeMounts:
    - name: run
      mountPath: /run/berth
    - name: images
      mountPath: /var/lib/berth/images
      {{- if $hostPathCache }}
      subPath: berth-images
      {{- end }}
    {{- include "berth.diskMounts" $ctx | nindent 4 }}
    # The root disk volume's root, where chart versions before subPath berth kept the overlay:
    # image-fetch moves it into Berth's directory (DISK_LEGACY_DIR).
    - name: disk
      mountPath: /var/lib/berth/volume
    - name: tmp
      mountPath: /tmp
  {{- with include "berth.diskDevices" $ctx }}
  volumeDevices:
    {{- . | nindent 4 }}
  {{- end }}
{{- end -}}
