package podmem

import (
	"strings"
	"testing"
)

func TestPlanTB(t *testing.T) {
	const guest = 512 * mib
	for _, tc := range []struct {
		name   string
		limit  uint64
		want   uint64
		short  bool
		reason string
	}{
		{"no limit", 0, MaxTBSize, false, "no memory limit"},
		{"room for the largest", guest + FixedOverhead + MaxTBSize*mib, MaxTBSize, false, "the largest tb-size"},
		{"more room than the largest", 8 << 30, MaxTBSize, false, "the largest tb-size"},
		{"room between the bounds", guest + FixedOverhead + 77*mib, 77, false, "all of it for the buffer"},
		{"room between, not whole MiB", guest + FixedOverhead + 77*mib + 4096, 77, false, "all of it for the buffer"},
		{"room for exactly the least", guest + FixedOverhead + MinTBSize*mib, MinTBSize, false, "all of it for the buffer"},
		{"a page short of the least", guest + FixedOverhead + MinTBSize*mib - 4096, MinTBSize, true, "below the least tb-size"},
		{"below guest RAM", 256 * mib, MinTBSize, true, "leaves -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanTB(tc.limit, guest)
			if got.MiB != tc.want || got.Short != tc.short || got.Limit != tc.limit || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("PlanTB(%d, %d) = %+v; want %d MiB, short %v, reason with %q", tc.limit, guest, got, tc.want, tc.short, tc.reason)
			}
			if got.MiB < MinTBSize || got.MiB > MaxTBSize {
				t.Errorf("tb-size %d out of %d..%d", got.MiB, MinTBSize, MaxTBSize)
			}
			if !got.Short && tc.limit != 0 && guest+TCGOverhead(got.MiB) > tc.limit {
				t.Errorf("tb-size %d MiB: guest + overhead %d > limit %d, yet not short", got.MiB, guest+TCGOverhead(got.MiB), tc.limit)
			}
		})
	}
}

func TestPlanKVM(t *testing.T) {
	const guest = 1 << 30
	for _, tc := range []struct {
		limit uint64
		short bool
	}{{0, false}, {guest + KVMOverhead, false}, {guest + KVMOverhead - 1, true}, {guest / 2, true}} {
		got := PlanKVM(tc.limit, guest)
		if got.Short != tc.short || got.MiB != 0 {
			t.Errorf("PlanKVM(%d) = %+v, want short %v and no buffer", tc.limit, got, tc.short)
		}
	}
}

// NeededOverhead is the boundary of Short, for both accelerators.
func TestNeededOverhead(t *testing.T) {
	const guest = 768 * mib
	for _, kvm := range []bool{false, true} {
		plan := PlanTB
		if kvm {
			plan = PlanKVM
		}
		n := NeededOverhead(kvm)
		if plan(guest+n, guest).Short || !plan(guest+n-1, guest).Short {
			t.Errorf("kvm=%v: NeededOverhead %d is not where Short begins", kvm, n)
		}
	}
}
