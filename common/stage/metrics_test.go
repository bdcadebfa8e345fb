package stage

import (
	"strings"
	"testing"
)

func TestMetricsPort(t *testing.T) {
	tests := []struct {
		v    string // "unset": not in the environment
		want int    // -1: bad input
	}{
		{"unset", 0}, {"", 0}, {"19100", 19100}, {"1024", 1024}, {"65535", 65535}, {"5901", 5901},
		{"5900", -1}, {"1023", -1}, {"80", -1}, {"0", -1}, {"65536", -1}, {"-1", -1}, {"+19100", -1},
		{" 19100", -1}, {"19100\n", -1}, {"0x4a5c", -1}, {"19100.0", -1}, {"true", -1}, {"99999999999999999999", -1},
	}
	for _, tt := range tests {
		m := map[string]string{}
		if tt.v != "unset" {
			m["METRICS_PORT"] = tt.v
		}
		n, err := MapEnv(m).MetricsPort()
		switch {
		case tt.want < 0 && (!IsBadInput(err) || !strings.Contains(err.Error(), "METRICS_PORT") || !strings.Contains(err.Error(), "1024 to 65535")):
			t.Errorf("MetricsPort(%q) = %d, %v; want bad input naming METRICS_PORT and what is allowed", tt.v, n, err)
		case tt.want >= 0 && (err != nil || n != tt.want):
			t.Errorf("MetricsPort(%q) = %d, %v; want %d", tt.v, n, err, tt.want)
		}
	}
}

func FuzzMetricsPort(f *testing.F) {
	for _, s := range []string{"19100", "5900", "1023", "", "65536", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := MapEnv(map[string]string{"METRICS_PORT": v}).MetricsPort()
		if err != nil {
			if !IsBadInput(err) {
				t.Fatalf("MetricsPort(%q): %v is not bad input", v, err)
			}
			return
		}
		if v == "" && n == 0 {
			return
		}
		if n < 1024 || n > 65535 || n == VNCPort {
			t.Fatalf("MetricsPort(%q) = %d: outside what is allowed", v, n)
		}
	})
}
