package node

import (
	"fmt"
	"os"
	"testing"
)

func TestParseStatus(t *testing.T) {
	text := "Name:\tqemu-system-x86\nUid:\t107\t107\t107\t107\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nbroken line\n"
	s := ParseStatus(text)
	for field, want := range map[string]string{
		"Name": "qemu-system-x86", "Uid": "107 107 107 107", "CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if s[field] != want {
			t.Errorf("%s = %q, want %q", field, s[field], want)
		}
	}
	if _, ok := s["broken line"]; ok || len(s) != 5 {
		t.Errorf("parsed %d fields (%v), want 5", len(s), s)
	}
}

// The real file of this process: our uid in all four fields.
func TestProcStatusSelf(t *testing.T) {
	s, err := ProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	if want := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid); s["Uid"] != want {
		t.Errorf("Uid = %q, want %q", s["Uid"], want)
	}
	if len(s["CapBnd"]) != 16 {
		t.Errorf("CapBnd = %q, want 16 hex digits", s["CapBnd"])
	}
	if _, err := ProcStatus(-1); err == nil {
		t.Error("pid -1: no error")
	}
}
