package charttest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// values.schema.json is written by hand, except its $defs named k8s.* (K8sDefs generates them,
// TestK8sSchemaInSync keeps them in sync). What several values share (an image, a stage, a label
// value, an object name, a port, a pull policy) is one $defs entry that each of them names with
// "$ref"; these tests keep it so.

// schemaWalk calls fn for every object of the schema below path, except the generated k8s.*
// definitions, with its JSON pointer.
func schemaWalk(v any, path string, fn func(path string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(path, v)
		for k, sub := range v {
			if path == "#/$defs" && strings.HasPrefix(k, "k8s.") {
				continue
			}
			schemaWalk(sub, path+"/"+k, fn)
		}
	case []any:
		for i, sub := range v {
			schemaWalk(sub, fmt.Sprintf("%s/%d", path, i), fn)
		}
	}
}

// minCopy is the size of a subschema's JSON from which a repeat counts as a copy: only a bare
// {"type": ...} may repeat.
const minCopy = 24

// TestSchemaHasNoCopies: no subschema of the hand-written part appears twice; a second use of
// one is a "$ref" to a $defs entry.
func TestSchemaHasNoCopies(t *testing.T) {
	seen := map[string][]string{}
	schemaWalk(readSchema(t), "#", func(path string, obj map[string]any) {
		if _, ref := obj["$ref"]; ref && len(obj) == 1 {
			return
		}
		b, err := json.Marshal(obj) // map keys sorted: equal subschemas, equal text
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= minCopy {
			seen[string(b)] = append(seen[string(b)], path)
		}
	})
	var copied []string // every path of a copied subschema
	for _, paths := range seen {
		if len(paths) > 1 {
			copied = append(copied, paths...)
		}
	}
	inCopy := func(path string) bool { // path lies inside another copied subschema
		return slices.ContainsFunc(copied, func(c string) bool { return strings.HasPrefix(path, c+"/") })
	}
	for text, paths := range seen {
		if len(paths) < 2 || !slices.ContainsFunc(paths, func(p string) bool { return !inCopy(p) }) {
			continue
		}
		sort.Strings(paths)
		t.Errorf("values.schema.json holds %d copies of %.100s... at %s: make it one $defs entry and $ref it", len(paths), text, strings.Join(paths, ", "))
	}
}

// TestSchemaRefsResolve: every "$ref" names a $defs entry, and every hand-written $defs entry is
// named by one (the generated k8s.* ones are made only for a $ref).
func TestSchemaRefsResolve(t *testing.T) {
	s := readSchema(t)
	defs, _ := s["$defs"].(map[string]any)
	used := map[string]bool{}
	var walkAll func(v any, path string)
	walkAll = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				name, isDef := strings.CutPrefix(ref, "#/$defs/")
				if _, defined := defs[name]; !isDef || !defined {
					t.Errorf("%s: $ref %q names no $defs entry", path, ref)
				}
				used[name] = true
			}
			for k, sub := range v {
				walkAll(sub, path+"/"+k)
			}
		case []any:
			for i, sub := range v {
				walkAll(sub, fmt.Sprintf("%s/%d", path, i))
			}
		}
	}
	walkAll(s, "#")
	for name := range defs {
		if !used[name] {
			t.Errorf("$defs.%s is named by no $ref", name)
		}
	}
}

// Each shared definition still refuses, in every place that uses it.
func TestSchemaSharedDefsRefuse(t *testing.T) {
	c := load(t)
	for _, tc := range []struct {
		name, values, msg string
	}{
		{"release image: unknown field", "images:\n  vmm: {tagg: x}\n", "at '/images/vmm': additional properties 'tagg'"},
		{"release image: a field removed", "images:\n  seedIso: {registry: null}\n", "at '/images/seedIso': missing property 'registry'"},
		{"release image: bad tag", "images:\n  novnc: {tag: \".x\"}\n", "/images/novnc/tag"},
		{"VM image: bad digest", oneVM + "    images: {dnsmasq: {digest: sha256:xyz}}\n", "/vms/vm1/images/dnsmasq/digest"},
		{"VM image: unknown field", oneVM + "    images: {netSetup: {tagg: x}}\n", "at '/vms/vm1/images/netSetup': additional properties 'tagg'"},
		{"VM image: bad pullPolicy", oneVM + "    images: {imageFetch: {pullPolicy: Sometimes}}\n", "/vms/vm1/images/imageFetch/pullPolicy"},
		{"VM default image: bad repository", oneVM + "vmDefaults:\n  images: {vmm: {repository: UPPER}}\n", "/vmDefaults/images/vmm/repository"},
		{"stage: bad logLevel", oneVM + "    stages: {seedIso: {logLevel: loud}}\n", "/vms/vm1/stages/seedIso/logLevel"},
		{"stage: unknown field", oneVM + "    stages: {imageFetch: {typo: 1}}\n", "at '/vms/vm1/stages/imageFetch': additional properties 'typo'"},
		{"stage: bad extraEnv name", oneVM + "    stages: {netSetup: {extraEnv: [{name: \"1X\", value: a}]}}\n", "/vms/vm1/stages/netSetup/extraEnv/0"},
		{"dnsmasq stage: no logLevel", oneVM + "    stages: {dnsmasq: {logLevel: debug}}\n", "at '/vms/vm1/stages/dnsmasq': additional properties 'logLevel'"},
		{"dnsmasq stage: bad extraEnv", oneVM + "    stages: {dnsmasq: {extraEnv: [{name: X, valu: a}]}}\n", "/vms/vm1/stages/dnsmasq/extraEnv/0"},
		{"nodeSelector: bad label value", oneVM + "    nodeSelector: {a: \"b c\"}\n", "/vms/vm1/nodeSelector/a"},
		{"podLabels: label value too long", oneVM + "    podLabels: {a: " + strings.Repeat("x", 64) + "}\n", "/vms/vm1/podLabels/a"},
		{"userDataConfigMap: not a name", oneVM + "    userDataConfigMap: x/y\n", "/vms/vm1/userDataConfigMap"},
		{"metaDataConfigMap: not a name", oneVM + "    metaDataConfigMap: X\n", "/vms/vm1/metaDataConfigMap"},
		{"vnc.passwordSecret: not a name", oneVM + "    vnc: {listen: 0.0.0.0, passwordSecret: Bad_Name}\n", "/vms/vm1/vnc/passwordSecret"},
		{"imagePullSecrets: not a name", oneVM + "imagePullSecrets: [A_B]\n", "/imagePullSecrets/0"},
		{"service port 0", oneVM + "    service: {enabled: true, ports: [{name: ssh, port: 0}]}\n", "/vms/vm1/service/ports/0/port"},
		{"service targetPort too large", oneVM + "    service: {enabled: true, ports: [{name: ssh, port: 22, targetPort: 70000}]}\n", "/vms/vm1/service/ports/0/targetPort"},
		{"service nodePort not an integer", oneVM + "    service: {enabled: true, type: NodePort, ports: [{name: ssh, port: 22, nodePort: 1.5}]}\n", "/vms/vm1/service/ports/0/nodePort"},
		{"tests.port 0", oneVM + "tests: {port: 0}\n", "/tests/port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefused(t, c, tc.values, tc.msg)
		})
	}
}
