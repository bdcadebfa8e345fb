package seed

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-vm/berth/init/seed/internal/isoread"

	"github.com/berth-vm/berth/common/stage"
)

// readISO reads every file of an image with github.com/kdomanski/iso9660.
func readISO(t testing.TB, img []byte) (label string, files map[string][]byte) {
	t.Helper()
	im, err := isoread.Read(img)
	if err != nil {
		t.Fatal(err)
	}
	return im.Label, im.Files
}

// env builds a Config the way the binary does, from a map.
func testConfig(t testing.TB, m map[string]string) Config {
	t.Helper()
	full := map[string]string{"VM_NAME": "vm-0", "BERTH_RUN_DIR": t.TempDir(), "USERDATA": "/nonexistent/ud", "METADATA": "/nonexistent/md"}
	for k, v := range m {
		full[k] = v
	}
	cfg, err := FromEnv(stage.MapEnv(full))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	return cfg
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func src(varName string, data string) Source {
	return Source{Var: varName, Path: "/" + strings.ToLower(varName), File: "/" + strings.ToLower(varName), Data: []byte(data), Present: true}
}
