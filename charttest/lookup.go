package charttest

import (
	"fmt"
	"path"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"
)

// Cluster stands for the objects a cluster holds, as the chart's `lookup` sees them during
// `helm install` or `helm upgrade` (Helm's engine with a client provider; `helm template` and
// Render see none): the kinds the chart looks up, served by client-go's fake dynamic client.
type Cluster struct {
	objects []runtime.Object
}

// lookupKinds are the kinds the chart looks up: apiVersion/kind → resource, namespaced.
var lookupKinds = map[string]struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}{
	"v1/PersistentVolumeClaim":       {schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}, true},
	"apps/v1/StatefulSet":            {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, true},
	"storage.k8s.io/v1/StorageClass": {schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"}, false},
}

// NewCluster makes a Cluster of objects, each written as YAML (apiVersion, kind, metadata with
// the namespace where it has one).
func NewCluster(objects ...string) (*Cluster, error) {
	c := &Cluster{}
	for _, o := range objects {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(o), &u.Object); err != nil {
			return nil, fmt.Errorf("object %q: %w", o, err)
		}
		c.objects = append(c.objects, &u)
	}
	return c, nil
}

// GetClientFor is engine.ClientProvider's: the chart may look up only lookupKinds.
func (c *Cluster) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	k, ok := lookupKinds[path.Join(apiVersion, kind)]
	if !ok {
		return nil, false, fmt.Errorf("the chart looks up %s %s, which charttest's Cluster does not serve: add it to lookupKinds", apiVersion, kind)
	}
	return fake.NewSimpleDynamicClient(runtime.NewScheme(), c.objects...).Resource(k.gvr), k.namespaced, nil
}

// RenderUpgrade renders the chart as `helm upgrade` does against cluster (values checked against
// the schema, lookup answered from cluster): the templates' output by file name
// (berth/templates/...), NOTES.txt among them.
func RenderUpgrade(c *chart.Chart, release, ns string, vals map[string]any, cluster *Cluster) (map[string]string, error) {
	kv, err := KubeVersion()
	if err != nil {
		return nil, err
	}
	caps := *chartutil.DefaultCapabilities
	caps.KubeVersion = *kv
	top, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{Name: release, Namespace: ns, Revision: 2, IsUpgrade: true}, &caps)
	if err != nil {
		return nil, err
	}
	return engine.RenderWithClientProvider(c, top, cluster)
}
