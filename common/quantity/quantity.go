// Package quantity parses sizes as Kubernetes and QEMU users write them:
// 1Gi, 1024Mi, 1024M, 1G, 512k, or a plain number of bytes.
package quantity

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var suffixes = []struct {
	s string
	m uint64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	// QEMU's and qemu-img's single letters are binary too: 1G = 1024M.
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"k", 1 << 10},
}

// ParseBytes parses s into a number of bytes. Decimal SI suffixes (1G = 10^9)
// are deliberately not accepted in lower case ("1g") to avoid ambiguity; the
// single upper-case letters follow QEMU (binary).
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := uint64(1)
	for _, suf := range suffixes {
		if strings.HasSuffix(t, suf.s) {
			mult = suf.m
			t = strings.TrimSuffix(t, suf.s)
			break
		}
	}
	if strings.HasSuffix(t, "B") && mult == 1 {
		t = strings.TrimSuffix(t, "B")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a whole number with an optional suffix Ki, Mi, Gi, Ti (or K, M, G, T)", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}
