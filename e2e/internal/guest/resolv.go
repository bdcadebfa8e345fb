package guest

import "strings"

// SearchDomains are the names of resolv.conf's last `search` line, each
// without the trailing dot dhclient writes (DHCP option 119 carries FQDNs:
// the same names to the resolver).
func SearchDomains(resolvConf string) []string {
	var names []string
	for _, line := range strings.Split(resolvConf, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "search" {
			continue
		}
		names = names[:0]
		for _, n := range f[1:] {
			names = append(names, strings.TrimSuffix(n, "."))
		}
	}
	return names
}
