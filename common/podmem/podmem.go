// Package podmem is the memory contract of the vm container: what it holds
// beyond the guest's RAM (QEMU's own memory, vmm, and under TCG QEMU's
// translation buffer), and the translation buffer's size (tb-size) vmm picks
// from the container's memory limit. The one place for these figures: vmm
// sizes tb-size by them, and the chart's default memoryOverhead is tested
// against them (charttest), so a guest that fills all its RAM fits the limit.
//
// The figures are measured by ci/bench/memory.sh (docs/benchmarks.md: the
// tb-size curve); change them together with a new measurement.
package podmem

import "fmt"

const mib = 1 << 20

// FixedOverhead is what the vm container holds beyond the guest's RAM and
// TCG's translation buffer once the guest has touched all its RAM: QEMU's own
// memory (code, libraries, device state, page tables of the guest's RAM),
// vmm (about 5 MiB) and the page cache the cgroup is charged for (the
// overlay's writes, reclaimable), plus margin. Measured with a 512 MiB guest
// that filled its RAM, as the cgroup's peak minus guest RAM minus tb-size:
// 43, 61, 78 and 93 MiB at tb-size 32, 64, 128 and 256 for plain QEMU in
// ci/bench/memory.sh's curve, 63 MiB for vmm and QEMU at tb-size 128 in
// TestBinaryGuestFillsRAM (cgroup v1, 2026-12-01; now part of
// vmm/vmm TestBinaryFullVolume).
const FixedOverhead = 112 * mib

// TB-size bounds, MiB (QEMU's -accel tcg,tb-size=). MaxTBSize is the
// choice when the room allows and when the container has no limit: one boot
// of the test guest uses about 139 MiB of a 256 MiB buffer (info jit), so 128
// costs about one flush a boot; the curve's boot and CPU times (one round on a
// loaded machine) do not tell 32..256 apart; and the chart's 256Mi
// memoryOverhead holds 128 + FixedOverhead, 256 does not (349 MiB measured).
// Below MinTBSize TCG retranslates constantly.
const (
	MinTBSize = 32
	MaxTBSize = 128
)

// TCGOverhead is what the vm container needs beyond guest RAM under TCG at
// tb-size tbMiB: the figure the pod's memoryOverhead must cover.
func TCGOverhead(tbMiB uint64) uint64 { return FixedOverhead + tbMiB*mib }

// KVMOverhead is what the vm container needs beyond guest RAM under KVM (no
// translation buffer).
const KVMOverhead = FixedOverhead

// TB is vmm's choice of tb-size and why.
type TB struct {
	MiB    uint64 // the tb-size for QEMU
	Limit  uint64 // the container's memory limit found, bytes; 0: none
	Room   int64  // Limit - guest RAM - FixedOverhead, bytes (what is left for the buffer); 0 with no limit
	Short  bool   // the limit is below guest RAM + TCGOverhead(MinTBSize): a guest that fills its RAM is OOM-killed
	Reason string // one line for the log and --dry-run
}

// PlanTB chooses tb-size for a guest of guest bytes in a container whose
// memory limit is limit bytes (0: no limit): the room the limit leaves beyond
// guest RAM and FixedOverhead, in whole MiB, bounded to MinTBSize..MaxTBSize.
// With no limit, MaxTBSize. When the room is below MinTBSize, MinTBSize and
// Short: the caller warns.
func PlanTB(limit, guest uint64) TB {
	if limit == 0 {
		return TB{MiB: MaxTBSize, Reason: fmt.Sprintf("no memory limit on the container: the largest tb-size, %d MiB", uint64(MaxTBSize))}
	}
	room := int64(limit) - int64(guest) - FixedOverhead
	t := TB{Limit: limit, Room: room}
	left := fmt.Sprintf("memory limit %s leaves %s beyond guest RAM %s and QEMU's own %s",
		MiBString(limit), signedMiB(room), MiBString(guest), MiBString(FixedOverhead))
	switch {
	case room < MinTBSize*mib:
		t.MiB, t.Short = MinTBSize, true
		t.Reason = fmt.Sprintf("%s, below the least tb-size, %d MiB", left, uint64(MinTBSize))
	case room >= MaxTBSize*mib:
		t.MiB = MaxTBSize
		t.Reason = fmt.Sprintf("%s: the largest tb-size, %d MiB", left, uint64(MaxTBSize))
	default:
		t.MiB = uint64(room) / mib
		t.Reason = left + ": all of it for the buffer"
	}
	return t
}

// PlanKVM is PlanTB's counterpart under KVM: no buffer (MiB 0); Short when
// the limit is below guest RAM + KVMOverhead.
func PlanKVM(limit, guest uint64) TB {
	if limit == 0 {
		return TB{Reason: "no memory limit on the container"}
	}
	room := int64(limit) - int64(guest) - KVMOverhead
	t := TB{Limit: limit, Room: room, Short: room < 0}
	t.Reason = fmt.Sprintf("memory limit %s leaves %s beyond guest RAM %s and QEMU's own %s (KVM: no translation buffer)",
		MiBString(limit), signedMiB(room), MiBString(guest), MiBString(KVMOverhead))
	return t
}

// NeededOverhead is the least memoryOverhead (limit - guest RAM) at which
// PlanTB is not Short (under TCG) or PlanKVM is not (kvm): what the warning asks for.
func NeededOverhead(kvm bool) uint64 {
	if kvm {
		return KVMOverhead
	}
	return TCGOverhead(MinTBSize)
}

// MiBString writes bytes as whole MiB ("640Mi"), rounding down.
func MiBString(b uint64) string { return fmt.Sprintf("%dMi", b/mib) }

func signedMiB(b int64) string {
	if b < 0 {
		return fmt.Sprintf("-%dMi", -b/mib)
	}
	return MiBString(uint64(b))
}
