package resolv

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example" // 129 bytes encoded
	tests := []struct {
		name        string
		in          string
		nameservers []string
		search      []string
		dropped     int
	}{
		{"kubernetes pod",
			"search ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
			[]string{"10.96.0.10"}, []string{"ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"}, 0},
		{"comments and last search wins",
			"# x\nsearch old.example\nsearch new.example ; trailing\nnameserver 1.1.1.1 # c\n",
			[]string{"1.1.1.1"}, []string{"new.example"}, 0},
		{"ipv6 nameserver dropped", "nameserver fd00::10\nnameserver 10.0.0.10\n", []string{"10.0.0.10"}, nil, 1},
		{"garbage nameserver dropped", "nameserver not-an-ip\n", nil, nil, 1},
		// hostile inputs tried: option injection, underscores, trailing dots, duplicates, overflow of option 119
		{"injection attempt", "search a.example,b=c dhcp-option=3 x_y.example good.example. good.example\n",
			nil, []string{"good.example"}, 3},
		{"option 119 overflow", "search " + long + " 2" + long + " 3" + long + "\n",
			nil, []string{long}, 2},
		{"empty", "", nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var ns []string
			for _, a := range c.Nameservers {
				ns = append(ns, a.String())
			}
			if !reflect.DeepEqual(ns, tt.nameservers) {
				t.Errorf("nameservers = %v, want %v", ns, tt.nameservers)
			}
			if !reflect.DeepEqual(c.Search, tt.search) {
				t.Errorf("search = %q, want %q", c.Search, tt.search)
			}
			if len(c.Dropped) != tt.dropped {
				t.Errorf("dropped = %q, want %d entries", c.Dropped, tt.dropped)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("search a.example b.example\nnameserver 10.0.0.1\n")
	f.Add("search x\x00y\nnameserver ::1\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		total := 0
		for _, d := range c.Search {
			if CheckDomain(d) != nil {
				t.Fatalf("kept an invalid domain %q", d)
			}
			total += encodedLen(d)
		}
		if total > MaxSearchBytes {
			t.Fatalf("search list is %d bytes encoded, over %d", total, MaxSearchBytes)
		}
		for _, a := range c.Nameservers {
			if !a.Is4() || a == (netip.Addr{}) {
				t.Fatalf("kept a non-IPv4 nameserver %v", a)
			}
		}
	})
}
