package fetch

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

// redactCases are URLs with a secret (userinfo, query, fragment) and what
// must remain of them.
var redactCases = []struct {
	in, want string
}{
	{"https://host/x?X-Amz-Signature=SECRET", "https://host/x?REDACTED"},
	{"https://host/x?a=1&X-Amz-Credential=SECRET&X-Amz-Signature=SECRET", "https://host/x?REDACTED"},
	{"https://host/x#SECRET", "https://host/x#REDACTED"},
	{"https://host/x?t=SECRET#SECRET", "https://host/x?REDACTED#REDACTED"},
	{"https://user:SECRET@host/x", "https://REDACTED@host/x"},
	{"http://SECRET@host:8080/x?SECRET", "http://REDACTED@host:8080/x?REDACTED"},
	{"https://host/x", "https://host/x"},
	{"https://host/a%20b.img?sig=SECRET", "https://host/a%20b.img?REDACTED"},
	{"https://host/x?%zzSECRET", "https://host/x?REDACTED"}, // does not parse
}

func TestRedactText(t *testing.T) {
	for _, tc := range redactCases {
		for _, wrap := range []string{"%s", "Get %q: dial tcp: refused", "url=%s err=x", "(%s)"} {
			in := fmt.Sprintf(wrap, tc.in)
			got := RedactText(in)
			if strings.Contains(got, "SECRET") {
				t.Errorf("RedactText(%q) = %q: the secret is left", in, got)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("RedactText(%q) = %q, want it to hold %q", in, got, tc.want)
			}
		}
	}
}

// Every channel of the stage: the log (text and json, message, string, error
// and any attributes, WithAttrs), a returned error (still bad input), the plan
// printed by --dry-run.
func TestRedactChannels(t *testing.T) {
	for _, tc := range redactCases {
		for _, json := range []bool{false, true} {
			var buf bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&buf, nil)
			if json {
				h = slog.NewJSONHandler(&buf, nil)
			}
			log := RedactingLogger(slog.New(h))
			log.Info("GET "+tc.in, "url", tc.in, "err", fmt.Errorf("get %q: eof", tc.in), "list", []string{tc.in})
			log.With("src", tc.in).WithGroup("g").Info("x", "url", tc.in)
			if strings.Contains(buf.String(), "SECRET") {
				t.Errorf("log leaks %s:\n%s", tc.in, buf.String())
			}
		}
		err := redactErr(fmt.Errorf("verify: %w", stage.BadInput("IMG_SOURCE", tc.in, "no")))
		if strings.Contains(err.Error(), "SECRET") || !stage.IsBadInput(err) {
			t.Errorf("error %q: leaks or lost bad input", err)
		}
		var ie *stage.InputError
		if !errors.As(err, &ie) {
			t.Errorf("errors.As lost the InputError")
		}
		p := Plan{Artifact: Artifact{Source: tc.in, Remote: true, Target: "x"}, ImageDir: "/i", DiskDir: "/d", VMName: "vm0"}
		if s := p.String(); strings.Contains(s, "SECRET") {
			t.Errorf("plan leaks: %s", s)
		}
	}
}

// The refusal of userinfo in FromEnv prints the URL redacted too.
func TestFromEnvRedacts(t *testing.T) {
	for _, src := range []string{"https://u:SECRET@h/x", "https://h/x y?sig=SECRET", "ftp://h/x?sig=SECRET"} {
		_, err := FromEnv(stage.MapEnv(map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": src}), statOnly)
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("IMG_SOURCE=%q: %v", src, err)
		}
	}
}
