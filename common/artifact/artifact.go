// Package artifact is the contract for the files image-fetch puts into the
// image cache (IMAGE_DIR) and vmm reads from it: the base image (IMG_SOURCE,
// IMG_TARGET, IMG_SHA256) and the read-only ISOs (CDROMS). It says what a
// source may be, what a cached file may be named, and reads the CDROMS list
// the chart writes.
package artifact

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/berth-vm/berth/common/stage"
)

// CDROMsVar is the environment variable of the ISOs: a JSON array of CDROM,
// the installer first.
const CDROMsVar = "CDROMS"

// MaxCDROMs is the most ISOs a VM gets: each is a SATA CD-ROM on one port
// of q35's built-in AHCI controller, which has six.
const MaxCDROMs = 6

// SourceError says why a source is refused. Kind tells the caller how to
// show the value (a URL's parts may be secret).
type SourceError struct {
	Kind   SourceErrorKind
	Reason string
}

// SourceErrorKind classifies a refused source.
type SourceErrorKind int

// The kinds of refused sources.
const (
	BadPath SourceErrorKind = iota
	NotPrintable
	NotHTTP
	Credentials
)

func (e *SourceError) Error() string { return e.Reason }

// CheckSource checks a source: an http:// or https:// URL with a host and no
// credentials, or an absolute clean path. It returns whether it is remote and
// its base name (the default target).
func CheckSource(src string) (remote bool, base string, err error) {
	if strings.HasPrefix(src, "/") {
		if stage.CheckPath("source", src) != nil {
			return false, "", &SourceError{BadPath, "a local path " + stage.PathAllowed}
		}
		return false, filepath.Base(src), nil
	}
	for i := 0; i < len(src); i++ {
		if src[i] <= ' ' || src[i] >= 0x7f {
			return false, "", &SourceError{NotPrintable, "a URL must be printable ASCII without spaces (percent-encode the rest)"}
		}
	}
	u, perr := url.Parse(src)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return false, "", &SourceError{NotHTTP, "must be an http:// or https:// URL with a host, or an absolute path (no file://, ftp://, data:, s3:// ...)"}
	}
	if u.User != nil {
		return false, "", &SourceError{Credentials, "credentials in the URL are not supported (they would show in the logs)"}
	}
	return true, path.Base(u.Path), nil
}

// Shown is a source as errors may show it: a URL without its userinfo, query
// and fragment (they may hold a password or a token), a path as it is. It
// works on text, so it also redacts a URL that does not parse (or is not
// quite one, like a source with a space): everything after its first '?' or
// '#' goes, and its userinfo.
func Shown(src string) string {
	if i := strings.IndexAny(src, "?#"); i >= 0 {
		src = src[:i+1] + "REDACTED"
	}
	scheme, rest, ok := strings.Cut(src, "://")
	if !ok {
		return src
	}
	host, p, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = "REDACTED@" + host[at+1:]
	}
	if strings.Contains(rest, "/") {
		return scheme + "://" + host + "/" + p
	}
	return scheme + "://" + host
}

// CheckTarget checks a cached file's name: a bare name, not hidden (hidden
// names are image-fetch's own temporary and lock files), no control
// characters, quotes or spaces.
func CheckTarget(name string) error {
	switch {
	case name == "" || name == "/" || name == ".":
		return fmt.Errorf("must be a file name, not empty")
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("must be a bare file name, not a path")
	case name == "..":
		return fmt.Errorf("must not be '..'")
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("must not be hidden (start with '.')")
	case len(name) > 200:
		return fmt.Errorf("must be at most 200 bytes")
	case strings.HasSuffix(name, ".sha256"):
		return fmt.Errorf("must not end in .sha256 (the record's suffix)")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("must not contain control characters")
		}
	}
	if name[0] == '-' {
		return fmt.Errorf("must not start with '-'")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '`' || c == '\\' {
			return fmt.Errorf("must be printable ASCII without spaces, quotes or backslashes")
		}
	}
	return nil
}

// CheckSHA256 checks a pinned hash (64 hex digits) and returns it lower-case.
func CheckSHA256(h string) (string, error) {
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return "", fmt.Errorf("must be 64 hexadecimal digits (a sha256), nothing else (no spaces or newline)")
	}
	return strings.ToLower(h), nil
}

// CDROM is one read-only ISO: downloaded or copied into IMAGE_DIR/<Target>
// by image-fetch, verified, and attached by vmm as a CD-ROM.
type CDROM struct {
	// Source is an http(s) URL or an absolute path in image-fetch's container.
	Source string `json:"source"`
	// SHA256 pins the ISO (optional).
	SHA256 string `json:"sha256,omitempty"`
	// Target is the file name in IMAGE_DIR (default: the source's base name).
	Target string `json:"target,omitempty"`

	// Remote is true for an http(s) source (set by ParseCDROMs).
	Remote bool `json:"-"`
}

// Name is how errors and logs name the i-th ISO: CDROMS[i].
func Name(i int) string { return fmt.Sprintf("%s[%d]", CDROMsVar, i) }

// ParseCDROMs reads the CDROMS value: a JSON array of {source, sha256,
// target}, unknown keys refused, every field checked, targets filled in and
// distinct. An empty value is no ISOs. Errors are stage.BadInput naming the
// item (CDROMS[i].source, ...); a URL is shown without its userinfo, query
// and fragment (Shown), and the whole value is never echoed.
func ParseCDROMs(value string) ([]CDROM, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	dec.DisallowUnknownFields()
	var list []CDROM
	if err := dec.Decode(&list); err != nil {
		return nil, stage.BadInputf(CDROMsVar, "(not shown)", "is not a JSON array of ISOs {source, sha256, target}: %v", err)
	}
	if dec.More() {
		return nil, stage.BadInputf(CDROMsVar, "(not shown)", "holds more than one JSON value")
	}
	if len(list) > MaxCDROMs {
		return nil, stage.BadInputf(CDROMsVar, fmt.Sprintf("%d ISOs", len(list)), "at most %d ISOs", MaxCDROMs)
	}
	seen := map[string]int{}
	for i := range list {
		c := &list[i]
		remote, base, err := CheckSource(c.Source)
		if err != nil {
			return nil, stage.BadInput(Name(i)+".source", Shown(c.Source), err.Error())
		}
		c.Remote = remote
		if c.SHA256 != "" {
			h, err := CheckSHA256(c.SHA256)
			if err != nil {
				return nil, stage.BadInput(Name(i)+".sha256", c.SHA256, err.Error())
			}
			c.SHA256 = h
		}
		if c.Target == "" {
			if err := CheckTarget(base); err != nil {
				return nil, stage.BadInputf(Name(i)+".target", base, "the source's base name is not usable as a file name in IMAGE_DIR (%v): set target", err)
			}
			c.Target = base
		} else if err := CheckTarget(c.Target); err != nil {
			return nil, stage.BadInput(Name(i)+".target", c.Target, err.Error())
		}
		if j, ok := seen[c.Target]; ok {
			return nil, stage.BadInputf(Name(i)+".target", c.Target, "is also %s's file name in IMAGE_DIR: each ISO needs its own (set target)", Name(j))
		}
		seen[c.Target] = i
	}
	return list, nil
}
