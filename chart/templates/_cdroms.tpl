{{/*
The VM's read-only ISOs: the installer (cdrom) first, then extraCdroms. image-fetch puts each into
the image cache beside the base images, vmm attaches each as a CD-ROM after the disks (the disk
boots first: a blank disk falls through to the installer, an installed one boots itself). Both get
them as CDROMS, a JSON array of {source, sha256, target} (common/artifact reads it). The argument
of each helper is a VM context (see _helpers.tpl) unless said otherwise.
*/}}

{{/* berth.cacheFile: dict source target → the file's name in the image cache, as image-fetch
names it: target, else the source's base name (a URL's path without its query or fragment). A
percent-encoded name stays encoded here, so the chart asks for a target where image-fetch might
have taken the decoded name: never the other way round. */}}
{{- define "berth.cacheFile" -}}
{{- if .target -}}
{{- .target -}}
{{- else if hasPrefix "/" .source -}}
{{- base .source -}}
{{- else -}}
{{- base (regexReplaceAll "[?#].*$" (regexReplaceAll "^https?://[^/?#]*" .source "") "") -}}
{{- end -}}
{{- end -}}

{{/* berth.cdroms: the VM's ISOs, the installer first, each {what (its key under vms.<name>),
source, sha256, target, file (its name in the image cache)}, as a JSON array; fails on what the
schema cannot see: cdrom.sha256 or .target without cdrom.source, more than 6 ISOs (vmm's most), a
base name the cache cannot take, two files of one name in the cache (two ISOs, or an ISO and the
base image). */}}
{{- define "berth.cdroms" -}}
{{- $cdrom := .vm.cdrom | default dict -}}
{{- $items := list -}}
{{- if $cdrom.source -}}
{{- $items = append $items (dict "what" "cdrom" "iso" $cdrom) -}}
{{- else -}}
{{- range $k := list "sha256" "target" -}}
{{- if get $cdrom $k -}}
{{- fail (printf "berth: vms.%s.cdrom.%s is set, but cdrom.source is empty (no installer ISO): remove cdrom.%s, or set cdrom.source" $.name $k $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $i, $c := .vm.extraCdroms | default list -}}
{{- $items = append $items (dict "what" (printf "extraCdroms[%d]" $i) "iso" $c) -}}
{{- end -}}
{{- if gt (len $items) 6 -}}
{{- fail (printf "berth: vms.%s has %d ISOs (cdrom and extraCdroms): vmm attaches at most 6 (the ports of q35's SATA controller)" .name (len $items)) -}}
{{- end -}}
{{- $seen := dict -}}{{- /* file in the image cache → the key that puts it there */ -}}
{{- if and $items .vm.image.source -}}
{{- $_ := set $seen (include "berth.cacheFile" (dict "source" .vm.image.source "target" .vm.image.target)) "image" -}}
{{- end -}}
{{- $out := list -}}
{{- range $items -}}
{{- $what := .what -}}
{{- $source := .iso.source | default "" -}}
{{- $sha256 := .iso.sha256 | default "" -}}
{{- $target := .iso.target | default "" -}}
{{- $file := include "berth.cacheFile" (dict "source" $source "target" $target) -}}
{{- if or (not (regexMatch "^[A-Za-z0-9_][A-Za-z0-9_.+-]*$" $file)) (gt (len $file) 200) (hasSuffix ".sha256" $file) -}}
{{- fail (printf "berth: vms.%s.%s.source's base name %q is not a file name the image cache takes (letters, digits, '_', '.', '+' and '-', not starting with '.', '+' or '-', at most 200 characters, not ending in .sha256): set vms.%s.%s.target" $.name $what $file $.name $what) -}}
{{- end -}}
{{- with get $seen $file -}}
{{- fail (printf "berth: vms.%s.%s and vms.%s.%s would both be %s in the image cache: give one of them a target of its own" $.name . $.name $what $file) -}}
{{- end -}}
{{- $_ := set $seen $file $what -}}
{{- $out = append $out (dict "what" $what "source" $source "sha256" $sha256 "target" $target "file" $file) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* berth.cdromsEnv: CDROMS, the ISOs as common/artifact reads them: each {source}, with sha256
and target only when set (image-fetch fills in the default target itself). */}}
{{- define "berth.cdromsEnv" -}}
{{- $out := list -}}
{{- range fromJsonArray (include "berth.cdroms" .) -}}
{{- $iso := dict "source" .source -}}
{{- if .sha256 -}}{{- $_ := set $iso "sha256" .sha256 -}}{{- end -}}
{{- if .target -}}{{- $_ := set $iso "target" .target -}}{{- end -}}
{{- $out = append $out $iso -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* berth.cdromsEnvVars: the CDROMS env entry, for image-fetch and vm; nothing when the VM has no
ISO. */}}
{{- define "berth.cdromsEnvVars" -}}
{{- if fromJsonArray (include "berth.cdroms" .) -}}
- name: CDROMS
  value: {{ include "berth.env" (include "berth.cdromsEnv" .) }}
{{- end }}
{{- end -}}
