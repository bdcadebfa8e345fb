{{/* berth.container.seed-iso: the init container that writes the cloud-init seed. The argument is a
VM context (see _helpers.tpl); statefulset.yaml includes it with nindent 8. */}}
{{- define "berth.container.seed-iso" -}}
{{- $ctx := . -}}
{{- $vm := .vm -}}
# 3. seed-iso: the cloud-init seed ($BERTH_RUN_DIR/seed.iso).
- name: seed-iso
  image: {{ include "berth.image" (merge (dict "component" "seedIso") $ctx) | toJson }}
  imagePullPolicy: {{ include "berth.pullPolicy" (merge (dict "component" "seedIso") $ctx) }}
  terminationMessagePolicy: FallbackToLogsOnError
  env:
    {{- include "berth.commonEnv" (merge (dict "stage" "seedIso") $ctx) | nindent 4 }}
    - name: USERDATA
      value: /userdata
    - name: METADATA
      value: /metadata
    - name: SSH_AUTHORIZED_KEYS
      value: {{ include "berth.env" (join "\n" ($vm.sshAuthorizedKeys | default list)) }}
    - name: SEED_FORMAT
      value: {{ include "berth.env" $vm.seedFormat }}
    {{- with $vm.stages.seedIso.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  securityContext:
    {{- include "berth.nonRootSecurityContext" $ctx | nindent 4 }}
  volumeMounts:
    - name: run
      mountPath: /run/berth
    - name: userdata
      mountPath: /userdata
      readOnly: true
    - name: metadata
      mountPath: /metadata
      readOnly: true
{{- end -}}
