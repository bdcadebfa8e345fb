package stage

import "testing"

// TestEnvStrictNumbersAndBooleans: Int and Bool read the value exactly as
// given: nothing is trimmed, folded or signed (every stage reads them the same
// way, so NO_VNC cannot mean one thing to net-setup and another to vmm).
func TestEnvStrictNumbersAndBooleans(t *testing.T) {
	ints := []struct {
		v    string
		want int // -1: refused
	}{
		{"4", 4}, {"1", 1}, {"8", 8}, {"004", 4},
		{" 4", -1}, {"4 ", -1}, {"4\n", -1}, {"\t4", -1}, {"+4", -1}, {"-4", -1}, {"4x", -1},
		{"0x4", -1}, {"4.0", -1}, {"４", -1}, {"0", -1}, {"9", -1}, {"99999999999999999999", -1},
	}
	for _, tt := range ints {
		n, err := MapEnv(map[string]string{"N": tt.v}).Int("N", 1, 1, 8)
		switch {
		case tt.want < 0 && !IsBadInput(err):
			t.Errorf("Int(%q) = %d, %v; want bad input", tt.v, n, err)
		case tt.want >= 0 && (err != nil || n != tt.want):
			t.Errorf("Int(%q) = %d, %v; want %d", tt.v, n, err, tt.want)
		}
	}
	bools := []struct {
		v    string
		want string // "true", "false" or "bad"
	}{
		{"true", "true"}, {"1", "true"}, {"yes", "true"}, {"on", "true"},
		{"false", "false"}, {"0", "false"}, {"no", "false"}, {"off", "false"},
		{"TRUE", "bad"}, {"True", "bad"}, {" true", "bad"}, {"true\n", "bad"}, {"y", "bad"}, {"trüe", "bad"},
	}
	for _, tt := range bools {
		b, err := MapEnv(map[string]string{"B": tt.v}).Bool("B", false)
		got := "bad"
		if err == nil {
			got = map[bool]string{true: "true", false: "false"}[b]
		} else if !IsBadInput(err) {
			t.Errorf("Bool(%q): %v is not bad input", tt.v, err)
		}
		if got != tt.want {
			t.Errorf("Bool(%q) = %s, want %s", tt.v, got, tt.want)
		}
	}
}
