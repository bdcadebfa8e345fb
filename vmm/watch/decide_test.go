package watch

import (
	"testing"
	"time"

	"github.com/berth-vm/berth/common/disks"
)

func TestRoomToResume(t *testing.T) {
	for _, tt := range []struct{ total, want uint64 }{
		{0, 64 << 20},
		{1 << 30, 64 << 20},            // 1 % is 10 MiB: the floor
		{6400 << 20, 64 << 20},         // 1 % is exactly 64 MiB
		{10 << 30, 10 << 30 / 100},     // 1 %
		{100 << 30, 1 << 30},           // 1 % is exactly 1 GiB
		{10 << 40, 1 << 30},            // 1 % is 100 GiB: the cap
		{100<<30 + 100, 1 << 30},       // just above: the cap
		{20 << 30, 20 << 30 / 100},     // 1 %
		{7000 << 20, 7000 << 20 / 100}, // 70 MiB
	} {
		if got := RoomToResume(tt.total); got != tt.want {
			t.Errorf("RoomToResume(%d) = %d, want %d", tt.total, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := Backoff(i); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i, got, w)
		}
	}
	if got := Backoff(1000); got != MaxBackoff {
		t.Errorf("Backoff(1000) = %s", got)
	}
}

func TestNextPause(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	first := NextPause(Pause{}, t0)
	if first.Retries != 0 || !first.Since.Equal(t0) {
		t.Fatalf("first pause: %+v", first)
	}
	first.LastCont = t0.Add(time.Minute)
	soon := NextPause(first, t0.Add(time.Minute+5*time.Second))
	if soon.Retries != 1 || !soon.LastCont.Equal(first.LastCont) {
		t.Errorf("paused again 5 s after cont: %+v, want retries 1", soon)
	}
	soon.LastCont = soon.Since.Add(20 * time.Second)
	again := NextPause(soon, soon.LastCont.Add(time.Second))
	if again.Retries != 2 {
		t.Errorf("third pause in a row: %+v, want retries 2", again)
	}
	later := NextPause(again, again.Since.Add(StableRun+time.Hour))
	if later.Retries != 0 {
		t.Errorf("a pause long after the last cont: %+v, want retries 0", later)
	}
}

func TestShouldResume(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	full := Volume{Known: true, Avail: 0, Total: 1 << 30}
	roomy := Volume{Known: true, Avail: 64 << 20, Total: 1 << 30}
	almost := Volume{Known: true, Avail: 64<<20 - 1, Total: 1 << 30}
	big := Volume{Known: true, Avail: 500 << 20, Total: 100 << 30} // needs 1 GiB
	block := Volume{}
	tests := []struct {
		name  string
		pause Pause
		after time.Duration
		vols  []Volume
		want  bool
	}{
		{"still full", Pause{Since: t0}, time.Minute, []Volume{full}, false},
		{"room again", Pause{Since: t0}, 2 * time.Second, []Volume{roomy}, true},
		{"a byte short of the room", Pause{Since: t0}, time.Minute, []Volume{almost}, false},
		{"1 % of a big volume not yet free", Pause{Since: t0}, time.Minute, []Volume{big}, false},
		{"one of two volumes has room", Pause{Since: t0}, time.Minute, []Volume{roomy, full}, false},
		{"both have room", Pause{Since: t0}, time.Minute, []Volume{roomy, roomy}, true},
		{"room, but backing off after a quick pause", Pause{Since: t0, Retries: 1}, 5 * time.Second, []Volume{roomy}, false},
		{"room, backoff over", Pause{Since: t0, Retries: 1}, 10 * time.Second, []Volume{roomy}, true},
		{"room, third quick pause: 20 s", Pause{Since: t0, Retries: 2}, 15 * time.Second, []Volume{roomy}, false},
		{"block device: not before BlockRetry", Pause{Since: t0}, 29 * time.Second, []Volume{block}, false},
		{"block device: after BlockRetry", Pause{Since: t0}, 30 * time.Second, []Volume{block}, true},
		{"no disk known to be full", Pause{Since: t0}, time.Hour, nil, false},
	}
	for _, tt := range tests {
		if got := ShouldResume(tt.pause, t0.Add(tt.after), tt.vols); got != tt.want {
			t.Errorf("%s: ShouldResume = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestGrow(t *testing.T) {
	const gi = 1 << 30
	need := func(size uint64) uint64 { return disks.FullAllocation("qcow2", size) }
	tests := []struct {
		name string
		t    Target
		cur  uint64
		s    Space
		want bool
		why  string
	}{
		{"no target", Target{Format: "qcow2"}, gi, Space{Avail: 100 * gi}, false, ""},
		{"at its size", Target{Format: "qcow2", Size: gi}, gi, Space{Avail: 100 * gi}, false, ""},
		{"larger than its size: never shrunk", Target{Format: "qcow2", Size: gi}, 2 * gi, Space{Avail: 100 * gi}, false, ""},
		{"room for the new size", Target{Format: "qcow2", Size: 2 * gi}, gi, Space{Avail: need(2 * gi)}, true, ""},
		{"room counting the file's own blocks", Target{Format: "qcow2", Size: 2 * gi}, gi, Space{Avail: need(2*gi) - gi, Used: gi}, true, ""},
		{"a cluster short", Target{Format: "qcow2", Size: 2 * gi}, gi, Space{Avail: need(2*gi) - 64<<10}, false, "the volume cannot hold the disk at its new size fully written"},
		{"raw: exactly its size", Target{Format: "raw", Size: 2 * gi}, gi, Space{Avail: gi, Used: gi}, true, ""},
		{"raw: a byte short", Target{Format: "raw", Size: 2 * gi}, gi, Space{Avail: gi - 1, Used: gi}, false, "the volume cannot hold the disk at its new size fully written"},
		{"block: the device grew", Target{Format: "raw", Block: true, Size: 2 * gi}, gi, Space{Device: 2 * gi}, true, ""},
		{"block: the device has not grown", Target{Format: "raw", Block: true, Size: 2 * gi}, gi, Space{Device: gi}, false, "the device is smaller than the disk's size"},
	}
	for _, tt := range tests {
		got, why := Grow(tt.t, tt.cur, tt.s)
		if got != tt.want || why != tt.why {
			t.Errorf("%s: Grow = %v, %q; want %v, %q", tt.name, got, why, tt.want, tt.why)
		}
	}
}

func TestHuman(t *testing.T) {
	for b, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0Ki", 64 << 20: "64.0Mi", 1536 << 20: "1.5Gi", 3 << 40: "3.0Ti", 5 << 50: "5120.0Ti"} {
		if got := Human(b); got != want {
			t.Errorf("Human(%d) = %s, want %s", b, got, want)
		}
	}
}
