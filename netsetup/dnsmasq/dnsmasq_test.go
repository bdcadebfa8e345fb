package dnsmasq_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/golden"
	"github.com/berth-vm/berth/netsetup/dnsmasq"
	"github.com/berth-vm/berth/netsetup/internal/testplan"
)

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		resolv string
	}{
		{"calico", nil, testplan.ResolvConf},
		{"no-resolv", map[string]string{"VM_IP": "10.9.0.1", "VM_GW": "10.9.0.2", "BRIDGE": "berth0"}, "options ndots:5\n"},
		{"hostile-resolv", nil, "nameserver 10.0.0.1\nnameserver 10.0.0.2,10.0.0.3\n" +
			"search ok.example bad\\nline.example x=y.example a,b.example dhcp-range=1 UPPER.Example.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := testplan.Calico(tt.env, tt.resolv)
			if err != nil {
				t.Fatal(err)
			}
			conf, err := dnsmasq.Render(p, "/run/berth")
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, tt.name+".conf", conf)
			dnsmasqTest(t, conf)
		})
	}
}

// dnsmasqTest runs the real `dnsmasq --test` on the config.
func dnsmasqTest(t *testing.T, conf []byte) {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is not installed (ci/install-deps.sh installs dnsmasq-base): %v", err)
	}
	path := filepath.Join(t.TempDir(), "dnsmasq.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--test", "--conf-file="+path).CombinedOutput(); err != nil {
		t.Fatalf("dnsmasq --test: %v: %s\n%s", err, out, conf)
	}
}

// allowed are the only option lines the renderer may write; the fuzz test
// checks that no resolv.conf can make it write another or a second one.
var allowed = []string{"port=", "interface=", "bind-interfaces", "no-resolv", "no-hosts", "pid-file=",
	"dhcp-authoritative", "no-ping", "log-dhcp", "dhcp-leasefile=", "dhcp-range=", "dhcp-option=option:router,",
	"dhcp-option=option:dns-server,", "dhcp-option=option:domain-name,", "dhcp-option=option:domain-search,",
	"dhcp-option=option:mtu,"}

func FuzzRenderFromResolvConf(f *testing.F) {
	f.Add(testplan.ResolvConf)
	f.Add("search a\nb.example\nnameserver 1.2.3.4\n")
	f.Add("search x\rdhcp-range=1.2.3.4 y\x00z dhcp-option=3,1.1.1.1\n")
	f.Add("domain a.b\nsearch " + strings.Repeat("abcdefgh.", 40) + "x\n")
	f.Fuzz(func(t *testing.T, resolvConf string) {
		p, err := testplan.Calico(nil, resolvConf)
		if err != nil {
			return
		}
		conf, err := dnsmasq.Render(p, "/run/berth")
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		seen := map[string]bool{}
		for _, line := range bytes.Split(bytes.TrimSuffix(conf, []byte("\n")), []byte("\n")) {
			l := string(line)
			if strings.HasPrefix(l, "# ") {
				if strings.Contains(l, "=") && !strings.HasPrefix(l, "# Written") && !strings.HasPrefix(l, "# The VM") {
					t.Fatalf("unexpected comment %q", l)
				}
				continue
			}
			ok := false
			for _, a := range allowed {
				if strings.HasPrefix(l, a) {
					if seen[a] {
						t.Fatalf("option %q written twice:\n%s", a, conf)
					}
					seen[a], ok = true, true
					// Values after the prefix hold no option separators.
					if strings.ContainsAny(l[len(a):], "= \t#\r\x00") {
						t.Fatalf("line %q carries unexpected bytes", l)
					}
					break
				}
			}
			if !ok {
				t.Fatalf("input %q added the line %q", resolvConf, l)
			}
		}
	})
}
