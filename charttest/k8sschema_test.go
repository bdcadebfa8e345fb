package charttest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func schemaPath() string { return filepath.Join(ChartDir(), "values.schema.json") }

// readSchema reads chart/values.schema.json as plain JSON values.
func readSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(schemaPath())
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", schemaPath(), err)
	}
	return s
}

// MarshalSchema is the one way values.schema.json is written: two-space indent, keys sorted,
// no HTML escaping, a final newline.
func MarshalSchema(s map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// TestK8sSchemaInSync: the schema's k8s.* definitions are exactly what K8sDefs generates from
// k8s.io/api (a k8s.io/api upgrade that changes a type fails here until -update rewrites them),
// and the file is in its canonical form.
func TestK8sSchemaInSync(t *testing.T) {
	s := readSchema(t)
	defs, _ := s["$defs"].(map[string]any)
	want := map[string]any{}
	b, err := json.Marshal(K8sDefs())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	have := map[string]any{}
	for k, v := range defs {
		if strings.HasPrefix(k, "k8s.") {
			have[k] = v
		}
	}
	if *update {
		for k := range have {
			delete(defs, k)
		}
		for k, v := range want {
			defs[k] = v
		}
		out, err := MarshalSchema(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(schemaPath(), out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !reflect.DeepEqual(have, want) {
		for k := range want {
			if !reflect.DeepEqual(have[k], want[k]) {
				t.Errorf("$defs.%s differs from what K8sDefs generates", k)
			}
		}
		for k := range have {
			if _, ok := want[k]; !ok {
				t.Errorf("$defs.%s is no longer generated", k)
			}
		}
		t.Error("values.schema.json is out of sync with k8s.io/api: go test -run TestK8sSchemaInSync -update")
	}
	raw, err := os.ReadFile(schemaPath())
	if err != nil {
		t.Fatal(err)
	}
	canon, err := MarshalSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, canon) {
		t.Error("values.schema.json is not in canonical form (sorted keys, 2-space indent): go test -run TestK8sSchemaInSync -update")
	}
}
