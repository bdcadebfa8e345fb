package localpod

import (
	"slices"
	"strings"
	"testing"
)

func TestFromEnvHostKeyTypes(t *testing.T) {
	for _, c := range []struct {
		env  string
		want []string
		err  string
	}{
		{"", nil, ""},
		{"ed25519", []string{"ed25519"}, ""},
		{"rsa,ecdsa,ed25519", []string{"rsa", "ecdsa", "ed25519"}, ""},
		{"dsa", nil, "SSH_HOST_KEY_TYPES"},
		{"ed25519,", nil, "SSH_HOST_KEY_TYPES"},
		{"ed25519 rsa", nil, "SSH_HOST_KEY_TYPES"},
	} {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv("SSH_HOST_KEY_TYPES", c.env)
			got, err := FromEnv(t.TempDir())
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("FromEnv: error %v, want one naming %s", err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(got.HostKeyTypes, c.want) {
				t.Fatalf("FromEnv: %v, %v; want %v", got.HostKeyTypes, err, c.want)
			}
		})
	}
}
