package charttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Kubernetes version is named once, in ci/k8s-version: the CI cluster builds and runs it
// (ci/cluster), the chart is rendered and linted for it (here and ci/chart/test.sh), and this
// module builds against its API (k8s.io/kubernetes and its staging modules, v0.<minor>.<patch>).

func fileKubeVersion(t *testing.T) string {
	t.Helper()
	kv, err := KubeVersion()
	if err != nil {
		t.Fatal(err)
	}
	return kv.Version
}

// TestKubeVersionModules: charttest/go.mod builds against the cluster's release: k8s.io/kubernetes
// at ci/k8s-version, its staging modules (the ones go.mod replaces) at the matching v0.Y.Z.
// (A test binary carries no module list in its build info, so go.mod is read.)
func TestKubeVersionModules(t *testing.T) {
	want := fileKubeVersion(t) // v1.Y.Z
	staging := "v0." + strings.TrimPrefix(want, "v1.")
	b, err := os.ReadFile(filepath.Join(ChartDir(), "..", "charttest", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	replaced := map[string]string{} // module → the version it is replaced with
	for _, m := range regexp.MustCompile(`(?m)^\s*(k8s\.io/[-a-z0-9]+) => k8s\.io/[-a-z0-9]+ (v\S+)$`).FindAllStringSubmatch(string(b), -1) {
		replaced[m[1]] = m[2]
	}
	required := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(k8s\.io/[-a-z0-9]+) (v\S+)( // indirect)?$`).FindAllStringSubmatch(string(b), -1) {
		required[m[1]] = m[2]
	}
	if v := required["k8s.io/kubernetes"]; v != want {
		t.Errorf("go.mod requires k8s.io/kubernetes %q, but ci/k8s-version is %s", v, want)
	}
	if len(replaced) < 10 {
		t.Errorf("go.mod replaces only %d k8s.io staging modules (k8s.io/kubernetes needs them all)", len(replaced))
	}
	for mod, v := range replaced {
		if v != staging {
			t.Errorf("go.mod replaces %s with %s, but ci/k8s-version %s wants %s", mod, v, want, staging)
		}
		if r, ok := required[mod]; ok && r != staging && r != "v0.0.0" { // v0.0.0: as k8s.io/kubernetes requires them
			t.Errorf("go.mod requires %s %s, but ci/k8s-version %s wants %s", mod, r, want, staging)
		}
	}
}

// TestKubeVersionShell: the shell reads the version from ci/k8s-version and names none itself.
func TestKubeVersionShell(t *testing.T) {
	want := fileKubeVersion(t)
	ci := filepath.Join(ChartDir(), "..", "ci")

	// ci/cluster/lib.sh, sourced as ci/cluster/up and ci/e2e do, without K8S_VERSION set.
	cmd := exec.Command("bash", "-c", `set -euo pipefail; . "$1"; printf %s "$K8S_VERSION"`, "bash", filepath.Join(ci, "cluster", "lib.sh"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("source ci/cluster/lib.sh: %v\n%s", err, out)
	}
	if string(out) != want {
		t.Errorf("ci/cluster/lib.sh: K8S_VERSION %q, but ci/k8s-version is %q", out, want)
	}

	// No script defaults a version of its own.
	literal := regexp.MustCompile(`(K8S|KUBE)_VERSION=\$\{[A-Z0-9_]+:-v?[0-9]`)
	for _, f := range []string{"cluster/build-k8s.sh", "cluster/lib.sh", "chart/test.sh"} {
		b, err := os.ReadFile(filepath.Join(ci, f))
		if err != nil {
			t.Fatal(err)
		}
		if m := literal.Find(b); m != nil {
			t.Errorf("ci/%s: %s... names a Kubernetes version of its own: read ci/k8s-version", f, m)
		}
		if !strings.Contains(string(b), "k8s-version") {
			t.Errorf("ci/%s does not read ci/k8s-version", f)
		}
	}
}
