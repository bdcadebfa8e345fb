package charttest

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The chart passes some values to Kubernetes as they are (tolerations, affinity, resources,
// extraEnv). So that `helm install` refuses a wrong one by its key, before anything is sent, the
// schema carries their shapes: K8sDefs generates them from the k8s.io/api Go types this module
// builds against (the same types the API server decodes into), and TestK8sSchemaInSync checks
// that chart/values.schema.json holds exactly what K8sDefs makes (go test -update writes it).

// K8sPassThrough maps each pass-through value's definition name to its Go type.
var K8sPassThrough = map[string]reflect.Type{
	"k8s.core.v1.Toleration":           reflect.TypeFor[corev1.Toleration](),
	"k8s.core.v1.Affinity":             reflect.TypeFor[corev1.Affinity](),
	"k8s.core.v1.ResourceRequirements": reflect.TypeFor[corev1.ResourceRequirements](),
	"k8s.core.v1.EnvVar":               reflect.TypeFor[corev1.EnvVar](),
}

// k8sEnums: the values of Kubernetes' string enums (Go constants, which reflection cannot see).
var k8sEnums = map[reflect.Type][]string{
	reflect.TypeFor[corev1.TolerationOperator]():    {"Exists", "Equal"},
	reflect.TypeFor[corev1.TaintEffect]():           {"NoSchedule", "PreferNoSchedule", "NoExecute"},
	reflect.TypeFor[corev1.NodeSelectorOperator]():  {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"},
	reflect.TypeFor[metav1.LabelSelectorOperator](): {"In", "NotIn", "Exists", "DoesNotExist"},
}

// quantityPattern is resource.Quantity's syntax (k8s.io/apimachinery/pkg/api/resource).
const quantityPattern = `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`

// K8sDefs returns the JSON-schema definitions of K8sPassThrough and every struct they contain,
// keyed by definition name ("k8s.<group>.<version>.<Type>").
func K8sDefs() map[string]any {
	defs := map[string]any{}
	for _, t := range K8sPassThrough {
		k8sSchemaOf(t, defs)
	}
	// What the API's validation (not its OpenAPI) also requires of an env entry: a value or a
	// valueFrom, not both; a valueFrom with exactly one source.
	env := defs["k8s.core.v1.EnvVar"].(map[string]any)
	env["not"] = map[string]any{"required": []any{"value", "valueFrom"}}
	src := defs["k8s.core.v1.EnvVarSource"].(map[string]any)
	src["minProperties"] = 1
	src["maxProperties"] = 1
	return defs
}

func k8sDefName(t reflect.Type) string {
	// k8s.io/api/core/v1 → core.v1; k8s.io/apimachinery/pkg/apis/meta/v1 → meta.v1
	parts := strings.Split(t.PkgPath(), "/")
	return fmt.Sprintf("k8s.%s.%s.%s", parts[len(parts)-2], parts[len(parts)-1], t.Name())
}

func k8sSchemaOf(t reflect.Type, defs map[string]any) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeFor[resource.Quantity]():
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "pattern": quantityPattern},
			map[string]any{"type": "number"},
		}}
	case reflect.TypeFor[intstr.IntOrString]():
		return map[string]any{"type": []any{"string", "integer"}}
	}
	if e, ok := k8sEnums[t]; ok {
		vals := make([]any, len(e))
		for i, v := range e {
			vals[i] = v
		}
		return map[string]any{"type": "string", "enum": vals}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": k8sSchemaOf(t.Elem(), defs)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": k8sSchemaOf(t.Elem(), defs)}
	case reflect.Struct:
		name := k8sDefName(t)
		if _, ok := defs[name]; !ok {
			defs[name] = nil // being built (no type here refers back to itself, but be safe)
			props := map[string]any{}
			var required []string
			k8sFields(t, defs, props, &required)
			sort.Strings(required)
			d := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
			if len(required) > 0 {
				req := make([]any, len(required))
				for i, r := range required {
					req[i] = r
				}
				d["required"] = req
			}
			defs[name] = d
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	panic(fmt.Sprintf("k8sSchemaOf: no schema for %s (%s)", t, t.Kind()))
}

// k8sFields adds t's JSON fields to props. A field without omitempty that is not a pointer,
// slice or map is required (the convention of k8s.io/api: e.g. EnvVar.name, a
// NodeSelectorRequirement's key and operator).
func k8sFields(t reflect.Type, defs, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			k8sFields(f.Type, defs, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = k8sSchemaOf(f.Type, defs)
		k := f.Type.Kind()
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") &&
			k != reflect.Pointer && k != reflect.Slice && k != reflect.Map {
			*required = append(*required, name)
		}
	}
}
