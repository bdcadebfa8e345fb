package seed

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

// ParseMetaData parses meta-data: one YAML mapping (an empty document is an
// empty mapping). Values are normalized so that they render as JSON and YAML:
// mapping keys become strings, and non-finite numbers are refused.
func ParseMetaData(src Source) (map[string]any, error) {
	md := map[string]any{}
	if !src.Present {
		return md, nil
	}
	node, yerr := parseYAML(src.Data)
	if yerr != nil {
		return nil, stage.BadInputf(src.Var, src.Path, "meta-data must be a YAML mapping: invalid YAML at %v", yerr)
	}
	if node == nil {
		return md, nil
	}
	var v any
	if err := node.Decode(&v); err != nil {
		return nil, stage.BadInputf(src.Var, src.Path, "meta-data must be a YAML mapping: %v", err)
	}
	if v == nil {
		return md, nil
	}
	nv, err := normalize(v)
	if err != nil {
		return nil, stage.BadInputf(src.Var, src.Path, "meta-data: %v", err)
	}
	m, ok := nv.(map[string]any)
	if !ok {
		return nil, stage.BadInputf(src.Var, src.Path, "meta-data must be a YAML mapping (key: value lines), not a %s", kind(nv))
	}
	return m, nil
}

func kind(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// normalize makes a decoded YAML value JSON-compatible.
func normalize(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			nx, err := normalize(x)
			if err != nil {
				return nil, err
			}
			out[k] = nx
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		// sorted so that a clash is reported the same way every time
		type kv struct {
			k string
			v any
		}
		var kvs []kv
		for k, x := range t {
			kvs = append(kvs, kv{scalarString(k), x})
		}
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
		for _, e := range kvs {
			if _, dup := out[e.k]; dup {
				return nil, fmt.Errorf("two keys read as %q", e.k)
			}
			nx, err := normalize(e.v)
			if err != nil {
				return nil, err
			}
			out[e.k] = nx
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			nx, err := normalize(x)
			if err != nil {
				return nil, err
			}
			out[i] = nx
		}
		return out, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil, fmt.Errorf("%v is not a number JSON can hold", t)
		}
		if t == 0 {
			return float64(0), nil // -0 is 0: YAML writes both as 0
		}
		return t, nil
	case time.Time:
		return t.UTC().Format(time.RFC3339Nano), nil
	default:
		return v, nil
	}
}

func scalarString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return "null"
	case time.Time:
		return t.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(t)
	}
}

// stringField returns md[key] as a string when it is a scalar.
func stringField(md map[string]any, key string) (string, bool, error) {
	v, ok := md[key]
	if !ok || v == nil {
		return "", false, nil
	}
	switch t := v.(type) {
	case string:
		s := strings.TrimSpace(t)
		return s, s != "", nil
	case int, int64, uint64, float64:
		return fmt.Sprint(t), true, nil
	}
	return "", false, fmt.Errorf("%s must be a string, not a %s", key, kind(v))
}

// metaDataKeys returns the SSH keys meta-data holds under public-keys
// (NoCloud) or public_keys (OpenStack): a string (one key a line), a list of
// them, or a mapping name → string or list. names maps each key to the name it
// had in a mapping, for config-drive's public_keys.
func metaDataKeys(src Source, md map[string]any) (keys []string, names map[string]string, err error) {
	names = map[string]string{}
	add := func(where, text string) error {
		ks, bad, err := parseKeyLines(text)
		if err != nil {
			return stage.BadInputf(src.Var, src.Path, "meta-data %s line %d is not an SSH public key in authorized_keys format (%v): %q", where, bad.n, err, excerpt(bad.text))
		}
		keys = append(keys, ks...)
		return nil
	}
	var walk func(where string, v any, name string) error
	walk = func(where string, v any, name string) error {
		switch t := v.(type) {
		case nil:
			return nil
		case string:
			before := len(keys)
			if err := add(where, t); err != nil {
				return err
			}
			if name != "" && len(keys) == before+1 {
				if _, seen := names[keys[before]]; !seen {
					names[keys[before]] = name
				}
			}
			return nil
		case []any:
			for i, x := range t {
				if _, isList := x.([]any); isList {
					return stage.BadInputf(src.Var, src.Path, "meta-data %s[%d]: a key must be a string", where, i)
				}
				if _, isMap := x.(map[string]any); isMap {
					return stage.BadInputf(src.Var, src.Path, "meta-data %s[%d]: a key must be a string", where, i)
				}
				if err := walk(fmt.Sprintf("%s[%d]", where, i), x, name); err != nil {
					return err
				}
			}
			return nil
		case map[string]any:
			if name != "" {
				return stage.BadInputf(src.Var, src.Path, "meta-data %s: a key must be a string", where)
			}
			ks := make([]string, 0, len(t))
			for k := range t {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			for _, k := range ks {
				if err := walk(where+"."+k, t[k], k); err != nil {
					return err
				}
			}
			return nil
		}
		return stage.BadInputf(src.Var, src.Path, "meta-data %s: a key must be a string, not %v", where, v)
	}
	for _, field := range []string{"public-keys", "public_keys"} {
		if v, ok := md[field]; ok {
			if err := walk(field, v, ""); err != nil {
				return nil, nil, err
			}
		}
	}
	return keys, names, nil
}
