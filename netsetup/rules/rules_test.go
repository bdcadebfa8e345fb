package rules_test

import (
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/golden"
	"github.com/berth-vm/berth/netsetup/internal/testplan"
	"github.com/berth-vm/berth/netsetup/rules"
)

func TestRuleSetGolden(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"calico", nil},
		{"no-vnc", map[string]string{"NO_VNC": "true"}},
		{"metrics", map[string]string{"METRICS_PORT": "19100"}},
		{"metrics-no-vnc", map[string]string{"METRICS_PORT": "9100", "NO_VNC": "true"}},
		{"custom-names", map[string]string{"BRIDGE": "berth0", "VM_IP": "10.9.0.1", "VM_GW": "10.9.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := testplan.Calico(tt.env, testplan.ResolvConf)
			if err != nil {
				t.Fatal(err)
			}
			set := rules.Build(p)
			var b strings.Builder
			b.WriteString("# iptables -S form\n")
			b.WriteString(strings.Join(set.Lines(), "\n"))
			b.WriteString("\n\n# iptables-restore --noflush input, one transaction per table\n")
			for _, tb := range set.Tables() {
				b.Write(set.Restore(tb))
			}
			golden.Assert(t, tt.name+".rules", []byte(b.String()))
		})
	}
}

// The VNC exception must exist exactly when NO_VNC is false, before the DNAT.
func TestVNCException(t *testing.T) {
	for _, noVNC := range []string{"false", "true"} {
		p, err := testplan.Calico(map[string]string{"NO_VNC": noVNC}, "")
		if err != nil {
			t.Fatal(err)
		}
		pre := rules.Build(p)[0]
		var vnc, dnat int
		for i, r := range pre.Rules {
			s := strings.Join(r, " ")
			if strings.Contains(s, "--dport 5900 -j RETURN") {
				vnc++
				if i+1 >= len(pre.Rules) || !strings.Contains(strings.Join(pre.Rules[i+1], " "), "DNAT") {
					t.Errorf("NO_VNC=%s: VNC exception %q is not right before a DNAT", noVNC, s)
				}
			}
			if strings.Contains(s, "-j DNAT") {
				dnat++
			}
		}
		if want := map[string]int{"false": 2, "true": 0}[noVNC]; vnc != want || dnat != 2 {
			t.Errorf("NO_VNC=%s: %d VNC exceptions and %d DNATs, want %d and 2", noVNC, vnc, dnat, want)
		}
	}
}

// The metrics exception must exist exactly when METRICS_PORT is set, once per
// interface (the pod's and the bridge's), before that interface's DNAT, and
// for TCP to the pod IP on that port only.
func TestMetricsException(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want int
	}{
		{nil, 0},
		{map[string]string{"METRICS_PORT": ""}, 0},
		{map[string]string{"METRICS_PORT": "19100"}, 2},
		{map[string]string{"METRICS_PORT": "19100", "NO_VNC": "true"}, 2},
	} {
		p, err := testplan.Calico(tt.env, "")
		if err != nil {
			t.Fatal(err)
		}
		pre := rules.Build(p)[0]
		exc := 0
		seen := map[string]bool{} // interfaces whose metrics exception came before their DNAT
		for _, r := range pre.Rules {
			s := strings.Join(r, " ")
			in := r[3] // "-d", pod, "-i", in, ...
			switch {
			case strings.Contains(s, "--dport 19100 -j RETURN"):
				exc++
				if !strings.HasPrefix(s, "-d "+p.PodIP.String()+"/32 -i "+in+" -p tcp -m tcp") {
					t.Errorf("%v: metrics exception %q is not TCP to the pod IP", tt.env, s)
				}
				seen[in] = true
			case strings.Contains(s, "-j DNAT") && tt.want > 0 && !seen[in]:
				t.Errorf("%v: the DNAT from %s comes before its metrics exception", tt.env, in)
			}
		}
		if exc != tt.want {
			t.Errorf("%v: %d metrics exceptions, want %d", tt.env, exc, tt.want)
		}
	}
}
