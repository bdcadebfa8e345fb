package guest

import (
	"slices"
	"testing"
)

func TestSearchDomains(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string
	}{
		{"kubelet", "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
			[]string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
		{"dhclient FQDNs", "domain x\nsearch ns.svc.cluster.local. svc.cluster.local. cluster.local.\nnameserver 192.168.254.1\n",
			[]string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
		{"tabs, the last line wins", "search a\nsearch\tb.  c\n", []string{"b", "c"}},
		{"none", "nameserver 1.1.1.1\n# search commented\n", nil},
		{"searchy word is not search", "searchx a\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SearchDomains(tt.conf); !slices.Equal(got, tt.want) {
				t.Errorf("SearchDomains(%q) = %q, want %q", tt.conf, got, tt.want)
			}
		})
	}
}
