package seed

import (
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

const (
	keyEd  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGa6A/W5z66HynjJfgmVsBpkHQfLUPqSK+A4fMxqoFYT test@berth"
	keyEd2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBPkiIzdBZDfwuLO5T9Tk8v0pmqmEqxUI3tHMeoEMVlv other@berth"
)

func TestParseAuthorizedKeys(t *testing.T) {
	text := "# admins\n\n" + keyEd + "\r\n  " + `no-port-forwarding,command="echo hi" ` + keyEd2 + "  \n#" + keyEd + "\n"
	got, err := ParseAuthorizedKeys("SSH_AUTHORIZED_KEYS", text)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{keyEd, `no-port-forwarding,command="echo hi" ` + keyEd2}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestParseAuthorizedKeysBad(t *testing.T) {
	// bad lines tried: a truncated key, an unknown type, base64 garbage, a
	// private key line, two keys on one line, a bare word
	tests := []struct {
		text string
		line string
	}{
		{keyEd + "\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGa6A\n", "line 3 "},
		{"ssh-foo AAAA\n", "line 1 "},
		{"# c\nssh-rsa !!!notbase64\n", "line 2 "},
		{"-----BEGIN OPENSSH PRIVATE KEY-----\n", "line 1 "},
		{keyEd + " " + keyEd2 + "\n", ""}, // accepted: the second key is the comment
		{"hello\n", "line 1 "},
	}
	for _, tt := range tests {
		_, err := ParseAuthorizedKeys("SSH_AUTHORIZED_KEYS", tt.text)
		if tt.line == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.text, err)
			}
			continue
		}
		if !stage.IsBadInput(err) || !strings.Contains(err.Error(), tt.line) || !strings.Contains(err.Error(), "SSH_AUTHORIZED_KEYS") {
			t.Errorf("%q: err = %v, want bad input naming SSH_AUTHORIZED_KEYS %s", tt.text, err, tt.line)
		}
	}
}
