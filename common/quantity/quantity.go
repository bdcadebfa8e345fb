// Package quantity parses sizes the one way every part of Berth reads them:
// a plain number of bytes, or a whole number with a binary suffix Ki, Mi, Gi
// or Ti. Decimal and single-letter suffixes are refused: "1G" is 10^9 bytes to
// Kubernetes (the pod's limit, the PVC's request) and 2^30 to QEMU and
// qemu-img, and a size that means two things overruns one of them.
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
}

// Allowed says what ParseBytes takes, for the error that names the variable.
const Allowed = "a whole number of bytes, or with a binary suffix Ki, Mi, Gi or Ti (e.g. 512Mi, 20Gi); " +
	"K, M, G, T, k, B and the decimal suffixes are refused: 1G is 10^9 bytes to Kubernetes and 2^30 to QEMU"

// ParseBytes parses s into a number of bytes (see Allowed).
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
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want %s", s, Allowed)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}
