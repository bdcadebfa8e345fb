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
