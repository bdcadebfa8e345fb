package artifact

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

func TestParseCDROMs(t *testing.T) {
	hex := strings.Repeat("Ab", 32)
	for _, tc := range []struct {
		name, value string
		want        []CDROM
		wantVar     string // "" = accepted
	}{
		{"empty", "", nil, ""},
		{"empty array", "[]", []CDROM{}, ""},
		{"installer", `[{"source":"https://h/d/debian.iso"}]`, []CDROM{{Source: "https://h/d/debian.iso", Target: "debian.iso", Remote: true}}, ""},
		{"local, pinned, target", `[{"source":"/isos/a.iso","sha256":"` + hex + `","target":"win.iso"}]`,
			[]CDROM{{Source: "/isos/a.iso", SHA256: strings.ToLower(hex), Target: "win.iso"}}, ""},
		{"two", `[{"source":"https://h/a.iso"},{"source":"/b.iso"}]`,
			[]CDROM{{Source: "https://h/a.iso", Target: "a.iso", Remote: true}, {Source: "/b.iso", Target: "b.iso"}}, ""},
		{"not an array", `{"source":"/a.iso"}`, nil, CDROMsVar},
		{"two values", `[] []`, nil, CDROMsVar},
		{"unknown key", `[{"source":"/a.iso","bootindex":1}]`, nil, CDROMsVar},
		{"no source", `[{"sha256":"` + hex + `"}]`, nil, "CDROMS[0].source"},
		{"relative", `[{"source":"a.iso"}]`, nil, "CDROMS[0].source"},
		{"unclean path", `[{"source":"/isos/../a.iso"}]`, nil, "CDROMS[0].source"},
		{"file URL", `[{"source":"file:///a.iso"}]`, nil, "CDROMS[0].source"},
		{"space", `[{"source":"https://h/a b.iso"}]`, nil, "CDROMS[0].source"},
		{"credentials", `[{"source":"https://u:p@h/a.iso"}]`, nil, "CDROMS[0].source"},
		{"short hash", `[{"source":"/a.iso","sha256":"abc"}]`, nil, "CDROMS[0].sha256"},
		{"path target", `[{"source":"/a.iso","target":"x/y.iso"}]`, nil, "CDROMS[0].target"},
		{"record target", `[{"source":"/a.iso","target":"a.iso.sha256"}]`, nil, "CDROMS[0].target"},
		{"no base name", `[{"source":"https://h"}]`, nil, "CDROMS[0].target"},
		{"same target", `[{"source":"/a/x.iso"},{"source":"/b/x.iso"}]`, nil, "CDROMS[1].target"},
		{"seven", "[" + strings.TrimSuffix(strings.Repeat(`{"source":"/a.iso"},`, 7), ",") + "]", nil, CDROMsVar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCDROMs(tc.value)
			if tc.wantVar != "" {
				var ie *stage.InputError
				if !errors.As(err, &ie) || ie.Var != tc.wantVar {
					t.Fatalf("err = %v, want bad input naming %s", err, tc.wantVar)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("[%d] = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"/isos/a.iso":                         "/isos/a.iso",
		"https://h/a.iso":                     "https://h/a.iso",
		"https://h/a.iso?X-Amz-Signature=sec": "https://h/a.iso?REDACTED",
		"https://u:sec@h/a.iso":               "https://REDACTED@h/a.iso",
		"https://u:sec@h":                     "https://REDACTED@h",
		"https://h/a.iso#sec":                 "https://h/a.iso#REDACTED",
		"https://h?a@b/c":                     "https://h?REDACTED",
	} {
		if got := Shown(in); got != want {
			t.Errorf("Shown(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseCDROMs: any value is either refused as bad input or gives ISOs
// whose targets are usable, distinct file names; an error never shows a
// URL's userinfo, query or fragment.
func FuzzParseCDROMs(f *testing.F) {
	f.Add(`[{"source":"https://h/a.iso","sha256":"` + strings.Repeat("0", 64) + `"}]`)
	f.Add(`[{"source":"/a.iso","target":"b.iso"},{"source":"https://u:SECRET@h/a.iso?SECRET"}]`)
	f.Add(`[{"source":"https://h/a.iso?SECRET=1"},{"source":"x"}]`)
	f.Fuzz(func(t *testing.T, v string) {
		list, err := ParseCDROMs(v)
		if err != nil {
			if !stage.IsBadInput(err) {
				t.Fatalf("not bad input: %v", err)
			}
			var ie *stage.InputError
			if !errors.As(err, &ie) || !strings.HasSuffix(ie.Var, ".source") {
				return
			}
			if i := strings.IndexAny(ie.Value, "?#"); i >= 0 && ie.Value[i+1:] != "REDACTED" {
				t.Fatalf("shows a query or fragment: %v", err)
			}
			if _, rest, ok := strings.Cut(ie.Value, "://"); ok {
				host, _, _ := strings.Cut(rest, "/")
				if at := strings.LastIndex(host, "@"); at >= 0 && host[:at] != "REDACTED" {
					t.Fatalf("shows userinfo: %v", err)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range list {
			if CheckTarget(c.Target) != nil || seen[c.Target] {
				t.Fatalf("target %q unusable or taken twice in %+v", c.Target, list)
			}
			seen[c.Target] = true
		}
	})
}
