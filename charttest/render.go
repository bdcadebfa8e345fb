// Package charttest renders Berth's Helm chart (../chart) with Helm's Go SDK, exactly as
// `helm install --dry-run` does on a client (schema validation, templates, NOTES, hooks), and
// decodes the manifests into Kubernetes API types, so tests assert on objects, not on text.
package charttest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// KubeVersionFile names the Kubernetes version of the CI cluster, which the chart is rendered
// for: ci/k8s-version, the one place that holds it (ci/cluster builds and runs that version,
// ci/chart/test.sh renders for it).
func KubeVersionFile() string {
	return filepath.Join(ChartDir(), "..", "ci", "k8s-version")
}

// KubeVersion reads the Kubernetes version the chart is rendered for (KubeVersionFile).
func KubeVersion() (*chartutil.KubeVersion, error) {
	b, err := os.ReadFile(KubeVersionFile())
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes version: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if !kubeVersionSyntax.MatchString(v) {
		return nil, fmt.Errorf("%s holds %q: want v1.<minor>.<patch>", KubeVersionFile(), v)
	}
	kv, err := chartutil.ParseKubeVersion(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KubeVersionFile(), err)
	}
	return kv, nil
}

// kubeVersionSyntax is what ci/cluster/build-k8s.sh accepts too.
var kubeVersionSyntax = regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+$`)

// ChartDir returns the chart's directory (../chart from this package), absolute.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "chart")
}

// LoadChart loads the chart from disk.
func LoadChart() (*chart.Chart, error) {
	c, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", ChartDir(), err)
	}
	return c, nil
}

// Rendered is one rendering of the chart: the release's manifest split into objects, and its
// hooks (the helm test objects) and NOTES.
type Rendered struct {
	Manifest string // the release's manifest, as `helm template` prints it (without hooks)
	Hooks    []*release.Hook
	Notes    string
	Objects  []Object // every object of Manifest, in order
}

// Object is one rendered Kubernetes object: its kind and name and the YAML it was decoded from.
type Object struct {
	Kind, Name string
	YAML       []byte
}

// ReadValues reads a values file (like `-f FILE`).
func ReadValues(path string) (map[string]any, error) {
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		return nil, fmt.Errorf("read values %s: %w", path, err)
	}
	return v.AsMap(), nil
}

// ParseValues reads values from YAML text.
func ParseValues(text string) (map[string]any, error) {
	v, err := chartutil.ReadValues([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("parse values: %w", err)
	}
	return v.AsMap(), nil
}

// Render renders the chart as release `release` in namespace `ns` with vals (user values, merged
// over values.yaml and checked against values.schema.json as `helm install` does).
func Render(c *chart.Chart, release, ns string, vals map[string]any) (*Rendered, error) {
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = release
	install.Namespace = ns
	kv, err := KubeVersion()
	if err != nil {
		return nil, err
	}
	install.KubeVersion = kv
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := install.Run(c, vals)
	if err != nil {
		return nil, err
	}
	r := &Rendered{Manifest: rel.Manifest, Hooks: rel.Hooks, Notes: rel.Info.Notes}
	objs, err := SplitManifest(rel.Manifest)
	if err != nil {
		return nil, err
	}
	r.Objects = objs
	return r, nil
}

// SplitManifest splits a multi-document manifest into objects, skipping empty documents.
func SplitManifest(manifest string) ([]Object, error) {
	var out []Object
	for _, doc := range strings.Split(manifest, "\n---") {
		doc = strings.TrimPrefix(doc, "---")
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("decode manifest document: %w\n%s", err, doc)
		}
		out = append(out, Object{Kind: meta.Kind, Name: meta.Metadata.Name, YAML: []byte(doc)})
	}
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Kinds returns "Kind/name" of every object, sorted.
func (r *Rendered) Kinds() []string {
	var k []string
	for _, o := range r.Objects {
		k = append(k, o.Kind+"/"+o.Name)
	}
	sort.Strings(k)
	return k
}

// Find returns the object of that kind and name, decoded into out (a pointer to an API type).
func (r *Rendered) Find(kind, name string, out any) error {
	for _, o := range r.Objects {
		if o.Kind == kind && o.Name == name {
			return yaml.UnmarshalStrict(o.YAML, out)
		}
	}
	return fmt.Errorf("no %s/%s rendered; have %v", kind, name, r.Kinds())
}

// StatefulSet returns the StatefulSet named name.
func (r *Rendered) StatefulSet(name string) (*appsv1.StatefulSet, error) {
	var s appsv1.StatefulSet
	if err := r.Find("StatefulSet", name, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// PVC returns the PersistentVolumeClaim named name.
func (r *Rendered) PVC(name string) (*corev1.PersistentVolumeClaim, error) {
	var c corev1.PersistentVolumeClaim
	if err := r.Find("PersistentVolumeClaim", name, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// ConfigMap returns the ConfigMap named name.
func (r *Rendered) ConfigMap(name string) (*corev1.ConfigMap, error) {
	var c corev1.ConfigMap
	if err := r.Find("ConfigMap", name, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// HookObjects returns the hooks' objects (helm test), in the order Helm runs them.
func (r *Rendered) HookObjects() ([]Object, error) {
	hooks := append([]*release.Hook(nil), r.Hooks...)
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].Weight < hooks[j].Weight })
	var out []Object
	for _, h := range hooks {
		objs, err := SplitManifest(h.Manifest)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Snapshot is the text a golden file holds: the manifest, then each hook, then NOTES.
func (r *Rendered) Snapshot() []byte {
	var b bytes.Buffer
	b.WriteString(strings.TrimSpace(r.Manifest))
	b.WriteString("\n")
	hooks := append([]*release.Hook(nil), r.Hooks...)
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].Path+hooks[i].Name < hooks[j].Path+hooks[j].Name })
	for _, h := range hooks {
		fmt.Fprintf(&b, "---\n# Hook %s (%s)\n%s\n", h.Name, h.Path, strings.TrimSpace(h.Manifest))
	}
	fmt.Fprintf(&b, "# NOTES.txt\n%s\n", commentOut(r.Notes))
	return b.Bytes()
}

func commentOut(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight("# "+l, " ")
	}
	return strings.Join(lines, "\n")
}

// Examples returns the chart's example values files (chart/examples/*.yaml), sorted.
func Examples() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(ChartDir(), "examples", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no chart/examples/*.yaml")
	}
	sort.Strings(files)
	return files, nil
}
