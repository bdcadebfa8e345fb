package charttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Validate checks rendered objects the way the API server would refuse them, as far as it can
// without one: each object decodes strictly into its k8s.io/api type (an unknown field, a wrong
// type, an integer where a string belongs, a duplicate key: refused), and the names, labels,
// annotation keys, env names, ConfigMap keys and sizes pass k8s.io/apimachinery's validation. No
// two objects share a kind and name. It returns every problem found.
//
// (The API server's own validation, k8s.io/kubernetes/pkg/apis/core/validation, is not an
// importable module; a throwaway kube-apiserver would be the complete check, see docs/chart.md.)
func Validate(objs []Object) error {
	var errs []error
	add := func(o Object, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s/%s: %s", o.Kind, o.Name, fmt.Sprintf(format, a...)))
	}
	seen := map[string]bool{}
	for _, o := range objs {
		key := o.Kind + "/" + o.Name
		if seen[key] {
			add(o, "rendered twice (one would replace the other)")
		}
		seen[key] = true
		for _, m := range validation.IsDNS1123Subdomain(o.Name) {
			add(o, "name: %s", m)
		}
		var meta struct {
			Metadata struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(o.YAML, &meta); err != nil { // fields: the typed decode below
			add(o, "metadata: %v", err)
		}
		checkLabels(func(f string, a ...any) { add(o, f, a...) }, "metadata.labels", meta.Metadata.Labels)
		checkAnnotations(func(f string, a ...any) { add(o, f, a...) }, "metadata.annotations", meta.Metadata.Annotations)
		var err error
		switch o.Kind {
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err = decodeAsSent(o.YAML, &s); err == nil {
				checkStatefulSet(func(f string, a ...any) { add(o, f, a...) }, &s)
			}
		case "ConfigMap":
			var c corev1.ConfigMap
			if err = decodeAsSent(o.YAML, &c); err == nil {
				checkConfigMap(func(f string, a ...any) { add(o, f, a...) }, &c)
			}
		case "Service":
			var s corev1.Service
			if err = decodeAsSent(o.YAML, &s); err == nil {
				checkService(func(f string, a ...any) { add(o, f, a...) }, &s)
			}
		case "Pod":
			var p corev1.Pod
			if err = decodeAsSent(o.YAML, &p); err == nil {
				checkLabels(func(f string, a ...any) { add(o, f, a...) }, "metadata.labels", p.Labels)
				checkPodSpec(func(f string, a ...any) { add(o, f, a...) }, &p.Spec)
			}
		case "PersistentVolumeClaim":
			var c corev1.PersistentVolumeClaim
			err = decodeAsSent(o.YAML, &c)
		case "ServiceAccount":
			var s corev1.ServiceAccount
			err = decodeAsSent(o.YAML, &s)
		default:
			err = errors.New("a kind Validate does not know")
		}
		if err != nil {
			add(o, "decode: %v", err)
		}
	}
	return errors.Join(errs...)
}

// decodeAsSent decodes an object as the API server gets it: Helm turns the YAML into JSON without
// knowing the types (so `vm: 123` is a number, refused where a string belongs, while
// sigs.k8s.io/yaml's typed Unmarshal would quietly make it "123"), and the server's strict
// decoding refuses unknown and duplicate fields.
func decodeAsSent(y []byte, out any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.DisallowUnknownFields()
	return d.Decode(out)
}

type addf func(format string, a ...any)

func checkLabels(add addf, where string, l map[string]string) {
	for k, v := range l {
		for _, m := range validation.IsQualifiedName(k) {
			add("%s key %q: %s", where, k, m)
		}
		for _, m := range validation.IsValidLabelValue(v) {
			add("%s.%s value %q: %s", where, k, v, m)
		}
	}
}

func checkAnnotations(add addf, where string, a map[string]string) {
	for k := range a {
		for _, m := range validation.IsQualifiedName(strings.ToLower(k)) {
			add("%s key %q: %s", where, k, m)
		}
	}
}

func checkStatefulSet(add addf, s *appsv1.StatefulSet) {
	// The pods' controller-revision-hash label is <name>-<up to 10 characters>.
	if l := len(s.Name) + 11; l > validation.LabelValueMaxLength {
		add("name is %d characters: the pods' controller-revision-hash label would be %d (at most 63)", len(s.Name), l)
	}
	for _, m := range validation.IsDNS1123Label(s.Name + "-0") {
		add("pod name %s-0: %s", s.Name, m)
	}
	if s.Spec.Selector == nil {
		add("no selector")
	} else {
		checkLabels(add, "spec.selector.matchLabels", s.Spec.Selector.MatchLabels)
		for k, v := range s.Spec.Selector.MatchLabels {
			if s.Spec.Template.Labels[k] != v {
				add("selector %s=%s does not select the pod template (%q)", k, v, s.Spec.Template.Labels[k])
			}
		}
	}
	checkLabels(add, "spec.template.metadata.labels", s.Spec.Template.Labels)
	checkAnnotations(add, "spec.template.metadata.annotations", s.Spec.Template.Annotations)
	for _, c := range s.Spec.VolumeClaimTemplates {
		pvc := fmt.Sprintf("%s-%s-0", c.Name, s.Name)
		for _, m := range validation.IsDNS1123Subdomain(pvc) {
			add("PVC %s: %s", pvc, m)
		}
		checkLabels(add, "volumeClaimTemplates labels", c.Labels)
	}
	checkPodSpec(add, &s.Spec.Template.Spec)
}

func checkPodSpec(add addf, p *corev1.PodSpec) {
	checkLabels(add, "nodeSelector", p.NodeSelector)
	for _, c := range append(append([]corev1.Container(nil), p.InitContainers...), p.Containers...) {
		for _, m := range validation.IsDNS1123Label(c.Name) {
			add("container %s: %s", c.Name, m)
		}
		for _, e := range c.Env {
			for _, m := range validation.IsEnvVarName(e.Name) {
				add("container %s env %s: %s", c.Name, e.Name, m)
			}
			if e.Value != "" && e.ValueFrom != nil {
				add("container %s env %s: value and valueFrom both set", c.Name, e.Name)
			}
		}
		for _, vm := range c.VolumeMounts {
			if strings.Contains(vm.SubPath, "..") || strings.HasPrefix(vm.SubPath, "/") {
				add("container %s mount %s: subPath %q", c.Name, vm.Name, vm.SubPath)
			}
		}
	}
	for _, v := range p.Volumes {
		if v.HostPath != nil {
			for _, part := range strings.Split(v.HostPath.Path, "/") {
				if part == ".." {
					add("volume %s: hostPath %q has '..'", v.Name, v.HostPath.Path)
				}
			}
		}
	}
}

func checkConfigMap(add addf, c *corev1.ConfigMap) {
	size := 0
	for k, v := range c.Data {
		for _, m := range validation.IsConfigMapKey(k) {
			add("data key %q: %s", k, m)
		}
		if _, ok := c.BinaryData[k]; ok {
			add("key %q in both data and binaryData", k)
		}
		size += len(v)
	}
	for k, v := range c.BinaryData {
		for _, m := range validation.IsConfigMapKey(k) {
			add("binaryData key %q: %s", k, m)
		}
		size += len(v)
	}
	if size > corev1.MaxSecretSize { // 1 MiB, the same limit for ConfigMaps
		add("data is %d bytes, over the 1 MiB a ConfigMap holds", size)
	}
}

func checkService(add addf, s *corev1.Service) {
	for _, m := range validation.IsDNS1035Label(s.Name) {
		add("Service name: %s", m)
	}
	checkLabels(add, "spec.selector", s.Spec.Selector)
	checkAnnotations(add, "metadata.annotations", s.Annotations)
	for _, p := range s.Spec.Ports {
		for _, m := range validation.IsValidPortName(p.Name) {
			add("port %s: %s", p.Name, m)
		}
		if p.NodePort != 0 && (s.Spec.Type == "" || s.Spec.Type == corev1.ServiceTypeClusterIP) {
			add("port %s: nodePort on a ClusterIP Service", p.Name)
		}
	}
}

// KubeletExpand is what the kubelet does to an env value: $(NAME) of a variable defined before
// it in the container becomes its value, "$$" becomes "$", anything else stays.
// (k8s.io/kubernetes/third_party/forked/golang/expansion.)
func KubeletExpand(s string, defined map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := defined[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
