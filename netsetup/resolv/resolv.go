// Package resolv reads the pod's resolv.conf and keeps only what is safe to
// hand to the VM over DHCP: IPv4 nameservers (option 6) and valid search
// domains that fit DHCP option 119 (255 bytes). Nothing read here is trusted:
// a hostile file can at worst lose its own entries, never add dnsmasq options.
package resolv

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// MaxSearchBytes is the longest DHCP option 119 payload (RFC 3397) we send:
// one option, so the uncompressed encoding of every domain must fit 255 bytes.
const MaxSearchBytes = 255

// Config is what the VM gets.
type Config struct {
	Nameservers []netip.Addr
	Search      []string
	Dropped     []string // entries left out, each with the reason, for the log
}

// Parse reads resolv.conf syntax. Unknown directives are ignored, as libc does.
func Parse(r io.Reader) (Config, error) {
	var c Config
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var search []string
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				continue
			}
			a, err := netip.ParseAddr(f[1])
			switch {
			case err != nil:
				c.Dropped = append(c.Dropped, fmt.Sprintf("nameserver %q: not an IP address", f[1]))
			case !a.Is4() || a.Is4In6():
				c.Dropped = append(c.Dropped, fmt.Sprintf("nameserver %s: DHCP option 6 carries IPv4 only", a))
			default:
				c.Nameservers = append(c.Nameservers, a)
			}
		case "search", "domain":
			// The last search/domain line wins, as in libc.
			search = append([]string(nil), f[1:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("read resolv.conf: %w", err)
	}
	used := 0
	seen := map[string]bool{}
	for _, d := range search {
		d = strings.TrimSuffix(strings.ToLower(d), ".")
		if d == "" || seen[d] {
			continue
		}
		if err := CheckDomain(d); err != nil {
			c.Dropped = append(c.Dropped, fmt.Sprintf("search domain %q: %v", d, err))
			continue
		}
		n := encodedLen(d)
		if used+n > MaxSearchBytes {
			c.Dropped = append(c.Dropped, fmt.Sprintf("search domain %q: would not fit DHCP option 119 (%d bytes)", d, MaxSearchBytes))
			continue
		}
		used += n
		seen[d] = true
		c.Search = append(c.Search, d)
	}
	return c, nil
}

// encodedLen is the domain's length in DNS wire format: a length byte per
// label plus the label, and the root's zero byte.
func encodedLen(d string) int { return len(d) + 2 }

// CheckDomain accepts a DNS name of letters, digits and hyphens (RFC 1123),
// labels of 1 to 63 bytes, 253 bytes at most. Underscores, spaces, '=',
// commas, quotes and control bytes are refused: they are what would let a
// search domain inject options into dnsmasq's config.
func CheckDomain(d string) error {
	if len(d) == 0 || len(d) > 253 {
		return fmt.Errorf("must be 1 to 253 bytes")
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("label %q must be 1 to 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q must not start or end with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q has %q: only a-z, 0-9 and '-' are allowed", label, c)
			}
		}
	}
	return nil
}
