// Package fetch is the image-fetch stage: it puts a verified base image into the
// image cache (IMAGE_DIR) and makes the VM's pet overlay in DISK_DIR.
//
// The stage is plan → print (--dry-run) → apply, or check (--check): FromEnv
// is pure and only validates input; Apply changes files, idempotently; Stage
// is the whole stage for stage.Main.
package fetch

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/datadisk"
	"github.com/berth-vm/berth/init/imgcheck"
	"github.com/berth-vm/berth/init/legacy"
)

// Vars are the variables image-fetch reads (besides the common ones), for -h.
func Vars() []stage.Var {
	return append([]stage.Var{
		{Name: "IMG_SOURCE", Help: "base image: an http:// or https:// URL, or an absolute path in the container (required)"},
		{Name: "IMG_TARGET", Default: "(the base name of IMG_SOURCE)", Help: "file name of the base image in IMAGE_DIR; a bare name, not hidden"},
		{Name: "IMG_SHA256", Help: "expected sha256 of the base image, 64 hex digits (optional; pins the image)"},
		{Name: "IMAGE_DIR", Default: stage.DefaultImageDir, Help: "image cache (absolute, clean path; not a symlink): <IMG_TARGET> and <IMG_TARGET>.sha256; may be shared between pods"},
		{Name: "DISK_DIR", Default: stage.DefaultDiskDir, Help: "pet disk (absolute, clean path; not a symlink): <VM_NAME>.qcow2 (overlay on the base) and <VM_NAME>.json"},
		{Name: "DISK_SIZE", Help: "virtual size of the overlay, e.g. 20Gi, a multiple of 512, at most 2048Ti (optional; grows the disk when its volume has room, never shrinks it)"},
		{Name: legacy.Var, Help: "the root disk volume's root, where charts before 0.x kept <VM_NAME>.qcow2 and .json: moved into DISK_DIR (optional; absolute, clean path)"},

		// The download policy (policy.go): how a failing, stalling or slow server is treated.
		{Name: "IMG_FETCH_ATTEMPTS", Default: "6", Help: "attempts per run for retryable download failures (network errors, 408, 429, 5xx, stalls, too slow), 1 to 100"},
		{Name: "IMG_FETCH_BACKOFF", Default: "2s", Help: "wait after the first failed attempt, doubled after each (Go duration: 500ms, 2s, 1m), 0 to 1h"},
		{Name: "IMG_FETCH_MAX_BACKOFF", Default: "30s", Help: "longest wait between attempts, from IMG_FETCH_BACKOFF to 1h"},
		{Name: "IMG_FETCH_STALL_TIMEOUT", Default: "60s", Help: "an attempt fails when no response headers or no body byte came for this long, 1s to 1h"},
		{Name: "IMG_FETCH_MIN_RATE", Default: "16Ki", Help: "an attempt fails when fewer bytes per second than this came over IMG_FETCH_RATE_WINDOW (bytes, or Ki/Mi/Gi); 0: no minimum"},
		{Name: "IMG_FETCH_RATE_WINDOW", Default: "60s", Help: "the window IMG_FETCH_MIN_RATE is averaged over, 1s to 1h"},
		{Name: "IMG_FETCH_DEADLINE", Default: "6h", Help: "the download gives up after this long in all (the partial file is kept), 1s to 720h"},
	}, datadisk.Vars()...)
}

// Plan is what image-fetch will do, computed from the environment alone.
type Plan struct {
	VMName string
	// Source is the URL (http/https) or the absolute local path of the base.
	Source string
	// Remote is true for an http(s) URL.
	Remote bool
	// Target is the bare file name of the base image in ImageDir.
	Target string
	// SHA256 is the pinned hash, lower-case hex, or "" when not pinned.
	SHA256   string
	ImageDir string
	DiskDir  string
	// DiskSize is the wanted virtual size of the overlay in bytes; 0 = the base's.
	DiskSize uint64
	// DiskSizeText is DISK_SIZE as written, for messages.
	DiskSizeText string

	// LegacyDir is DISK_LEGACY_DIR, or "" (init/legacy).
	LegacyDir string

	// Fetch is the download policy (IMG_FETCH_*, policy.go).
	Fetch Policy

	// Data is the data disks (DATA_DISKS, DATA_DISK_DIR: init/datadisk).
	Data datadisk.Plan
}

// Legacy is the pet disk's earlier layout, to move from.
func (p Plan) Legacy() legacy.Layout {
	return legacy.Layout{VMName: p.VMName, DiskDir: p.DiskDir, LegacyDir: p.LegacyDir}
}

// BasePath is the absolute path of the cached base image.
func (p Plan) BasePath() string { return filepath.Join(p.ImageDir, p.Target) }

// RecordPath is the base image's recorded sha256 (sha256sum format).
func (p Plan) RecordPath() string { return p.BasePath() + ".sha256" }

// OverlayPath is the pet disk.
func (p Plan) OverlayPath() string { return filepath.Join(p.DiskDir, p.VMName+".qcow2") }

// OverlayRecordPath records which base the pet disk was made from.
func (p Plan) OverlayRecordPath() string { return filepath.Join(p.DiskDir, p.VMName+".json") }

// FromEnv validates the environment and returns the plan. Every error is an
// *stage.InputError (exit 2); nothing is read from or written to disk except
// the existence check of a local IMG_SOURCE.
func FromEnv(env stage.Env, stat func(string) error) (Plan, error) {
	var p Plan
	var err error
	if p.VMName, err = env.VMName(); err != nil {
		return p, err
	}

	src, ok := env.Lookup("IMG_SOURCE")
	if !ok {
		return p, stage.BadInput("IMG_SOURCE", "", "must be set: an http:// or https:// URL or an absolute path")
	}
	p.Source = src
	defTarget := ""
	switch {
	case strings.HasPrefix(src, "/"):
		if err := stage.CheckPath("IMG_SOURCE", src); err != nil {
			return p, stage.BadInput("IMG_SOURCE", src, "a local path "+stage.PathAllowed)
		}
		if err := stat(src); err != nil {
			return p, stage.BadInputf("IMG_SOURCE", src, "local file not readable: %v", err)
		}
		defTarget = filepath.Base(src)
	default:
		for i := 0; i < len(src); i++ {
			if src[i] <= ' ' || src[i] >= 0x7f {
				return p, stage.BadInput("IMG_SOURCE", redactRaw(src), "a URL must be printable ASCII without spaces (percent-encode the rest)")
			}
		}
		u, err := url.Parse(src)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			return p, stage.BadInput("IMG_SOURCE", redactRaw(src), "must be an http:// or https:// URL with a host, or an absolute path (no file://, ftp://, data:, s3:// ...)")
		}
		if u.User != nil {
			return p, stage.BadInput("IMG_SOURCE", RedactURL(u), "credentials in the URL are not supported (they would show in the logs)")
		}
		p.Remote = true
		defTarget = path.Base(u.Path)
	}

	tv, set := env.Lookup("IMG_TARGET")
	if !set {
		tv = defTarget
	}
	if err := CheckTarget(tv); err != nil {
		if !set {
			return p, stage.BadInputf("IMG_TARGET", tv, "the base name of IMG_SOURCE %q is not usable as IMG_TARGET (%v): set IMG_TARGET", RedactText(src), err)
		}
		return p, stage.BadInputf("IMG_TARGET", tv, "%v", err)
	}
	p.Target = tv

	if h, ok := env.Lookup("IMG_SHA256"); ok {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return p, stage.BadInput("IMG_SHA256", h, "must be 64 hexadecimal digits (a sha256), nothing else (no spaces or newline)")
		}
		p.SHA256 = strings.ToLower(h)
	}

	if p.ImageDir, err = env.Path("IMAGE_DIR", stage.DefaultImageDir); err != nil {
		return p, err
	}
	if p.DiskDir, err = env.Path("DISK_DIR", stage.DefaultDiskDir); err != nil {
		return p, err
	}
	// Not read by image-fetch, but common to every stage and listed by -h: a
	// bad value is refused here too rather than found by the next stage.
	if _, err = env.Path("BERTH_RUN_DIR", stage.DefaultRunDir); err != nil {
		return p, err
	}

	if p.ImageDir == p.DiskDir && (p.Target == p.VMName+".qcow2" || p.Target == p.VMName+".json") {
		return p, stage.BadInputf("IMG_TARGET", p.Target, "is the pet disk's own file name in %s (IMAGE_DIR = DISK_DIR): choose another name", p.DiskDir)
	}

	if s, ok := env.Lookup("DISK_SIZE"); ok {
		n, err := quantity.ParseBytes(s)
		if err != nil || n == 0 || strings.ContainsFunc(s, unicode.IsSpace) {
			return p, stage.BadInput("DISK_SIZE", s, "must be a size greater than 0: "+quantity.Allowed)
		}
		if n%512 != 0 {
			return p, stage.BadInputf("DISK_SIZE", s, "must be a multiple of 512 bytes (is %d)", n)
		}
		if n > imgcheck.MaxOverlaySize {
			return p, stage.BadInputf("DISK_SIZE", s, "is %d bytes, more than a qcow2 overlay can hold (at most %d bytes = 2048Ti)", n, imgcheck.MaxOverlaySize)
		}
		p.DiskSize, p.DiskSizeText = n, s
	}

	if v, ok := env.Lookup(legacy.Var); ok {
		if err := stage.CheckPath(legacy.Var, v); err != nil {
			return p, err
		}
		if v == p.DiskDir || v == p.ImageDir {
			return p, stage.BadInput(legacy.Var, v, "must be the root disk volume's root, not DISK_DIR or IMAGE_DIR itself")
		}
		p.LegacyDir = v
	}

	// The download policy (IMG_FETCH_*): validated for a local source too, so
	// a typo is found before it matters.
	if p.Fetch, err = PolicyFromEnv(env); err != nil {
		return p, err
	}
	if p.Data, err = datadisk.FromEnv(env); err != nil {
		return p, err
	}
	return p, nil
}

// CheckTarget checks an image file name: a bare name, not hidden (hidden names
// are the stage's own temporary and lock files), no control characters.
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

// String prints the plan for --dry-run and the log.
func (p Plan) String() string {
	var b strings.Builder
	kind := "local file"
	if p.Remote {
		kind = "http download"
	}
	fmt.Fprintf(&b, "source:   %s (%s)\n", RedactText(p.Source), kind)
	if p.Remote {
		fmt.Fprintf(&b, "download: %s\n", p.Fetch)
	}
	fmt.Fprintf(&b, "base:     %s (+ .sha256)\n", p.BasePath())
	if p.SHA256 != "" {
		fmt.Fprintf(&b, "sha256:   %s (pinned)\n", p.SHA256)
	} else {
		fmt.Fprintf(&b, "sha256:   not pinned (recorded after download)\n")
	}
	fmt.Fprintf(&b, "overlay:  %s (+ %s)\n", p.OverlayPath(), filepath.Base(p.OverlayRecordPath()))
	if p.DiskSize > 0 {
		fmt.Fprintf(&b, "size:     %s = %d bytes (grow only)\n", p.DiskSizeText, p.DiskSize)
	} else {
		fmt.Fprintf(&b, "size:     the base's virtual size\n")
	}
	if p.LegacyDir != "" {
		fmt.Fprintf(&b, "legacy:   %s (a pet disk of an earlier chart there is moved into DISK_DIR)\n", p.LegacyDir)
	}
	b.WriteString(p.Data.String())
	return b.String()
}
