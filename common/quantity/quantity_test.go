package quantity

import (
	"strconv"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"1Gi", 1 << 30, false},
		{"1024Mi", 1 << 30, false},
		{"4096", 4096, false},
		{"1Ti", 1 << 40, false},
		// one meaning per suffix: what Kubernetes and QEMU read differently is refused
		{"1024M", 0, true},
		{"1G", 0, true},
		{"512k", 0, true},
		{"512K", 0, true},
		{"1T", 0, true},
		{"4096B", 0, true},
		{"1Pi", 0, true},
		{"1e9", 0, true},
		{" 2Gi ", 2 << 30, false},
		// bad inputs tried:
		{"", 0, true},
		{"Gi", 0, true},
		{"1.5Gi", 0, true},
		{"-1Gi", 0, true},
		{"1GB", 0, true},
		{"1g", 0, true},
		{"ten", 0, true},
		{"99999999999Ti", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1Gi", "1024M", "12", "", "1.5G", "18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		// Whatever was accepted means a byte count that reads back the same.
		back, err := ParseBytes(strconv.FormatUint(n, 10))
		if err != nil || back != n {
			t.Fatalf("ParseBytes(%q) = %d, but its decimal form reads back as %d, %v", s, n, back, err)
		}
	})
}
