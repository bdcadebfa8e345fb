package fetch

import (
	"errors"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

// TestPolicyFromEnv: unset gives the defaults; each variable is read.
func TestPolicyFromEnv(t *testing.T) {
	p, err := PolicyFromEnv(stage.MapEnv(nil))
	if err != nil || p != DefaultPolicy() {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	p, err = PolicyFromEnv(stage.MapEnv(map[string]string{"IMG_FETCH_ATTEMPTS": "2", "IMG_FETCH_BACKOFF": "0s",
		"IMG_FETCH_MAX_BACKOFF": "100ms", "IMG_FETCH_STALL_TIMEOUT": "1s", "IMG_FETCH_MIN_RATE": "0",
		"IMG_FETCH_RATE_WINDOW": "2s", "IMG_FETCH_DEADLINE": "90m"}))
	want := Policy{Attempts: 2, Backoff: 0, MaxBackoff: 100 * time.Millisecond, StallTimeout: time.Second,
		MinRate: 0, RateWindow: 2 * time.Second, Deadline: 90 * time.Minute}
	if err != nil || p != want {
		t.Fatalf("got %+v %v, want %+v", p, err, want)
	}
	d := NewDownloader(nil)
	p.Apply(d)
	if d.Attempts != 2 || d.IdleTimeout != time.Second || d.Deadline != 90*time.Minute || d.MinRate != 0 {
		t.Errorf("Apply: %+v", d)
	}
}

// TestPolicyBadInputs: each bad value is exit 2 naming the variable, also
// through FromEnv (so the run changes nothing).
func TestPolicyBadInputs(t *testing.T) {
	tests := []struct{ name, val string }{
		{"IMG_FETCH_ATTEMPTS", "0"},
		{"IMG_FETCH_ATTEMPTS", "101"},
		{"IMG_FETCH_ATTEMPTS", "many"},
		{"IMG_FETCH_BACKOFF", "2"}, // no unit
		{"IMG_FETCH_BACKOFF", "-1s"},
		{"IMG_FETCH_BACKOFF", "2h"},
		{"IMG_FETCH_MAX_BACKOFF", "1s"}, // shorter than the 2s default backoff
		{"IMG_FETCH_STALL_TIMEOUT", "500ms"},
		{"IMG_FETCH_STALL_TIMEOUT", "soon"},
		{"IMG_FETCH_MIN_RATE", "16K"},
		{"IMG_FETCH_MIN_RATE", "-1"},
		{"IMG_FETCH_MIN_RATE", "2Ti"},
		{"IMG_FETCH_RATE_WINDOW", "0s"},
		{"IMG_FETCH_DEADLINE", "0"},
		{"IMG_FETCH_DEADLINE", "1000h"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.val, func(t *testing.T) {
			env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": "http://h/x.qcow2", tt.name: tt.val}
			_, err := FromEnv(stage.MapEnv(env), statOnly)
			var ie *stage.InputError
			if !errors.As(err, &ie) || ie.Var != tt.name {
				t.Fatalf("err = %v, want bad input naming %s", err, tt.name)
			}
		})
	}
}
