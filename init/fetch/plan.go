// Package fetch is the image-fetch stage: it puts a verified base image into the
// image cache (IMAGE_DIR) and makes the VM's pet overlay in DISK_DIR.
//
// The stage is plan → print (--dry-run) → apply, or check (--check): FromEnv
// is pure and only validates input; Apply changes files, idempotently; Stage
// is the whole stage for stage.Main.
package fetch

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/datadisk"
	"github.com/berth-vm/berth/init/imgcheck"
	"github.com/berth-vm/berth/init/legacy"
)

// Vars are the variables image-fetch reads (besides the common ones), for -h.
func Vars() []stage.Var {
	return append([]stage.Var{
		{Name: "IMG_SOURCE", Help: "base image: an http:// or https:// URL, or an absolute path in the container (required unless DISK_BLANK=true)"},
		{Name: "DISK_BLANK", Default: "false", Help: "true: the pet disk is a blank qcow2 of DISK_SIZE without a base (an OS is installed on it from CDROMS); IMG_SOURCE, IMG_TARGET and IMG_SHA256 must then be empty. A disk made blank is never paired with a base, nor one made on a base left blank"},
		{Name: "IMG_TARGET", Default: "(the base name of IMG_SOURCE)", Help: "file name of the base image in IMAGE_DIR; a bare name, not hidden"},
		{Name: "IMG_SHA256", Help: "expected sha256 of the base image, 64 hex digits (optional; pins the image)"},
		{Name: "IMAGE_DIR", Default: stage.DefaultImageDir, Help: "image cache (absolute, clean path; not a symlink): <IMG_TARGET> and <IMG_TARGET>.sha256; may be shared between pods"},
		{Name: "DISK_DIR", Default: stage.DefaultDiskDir, Help: "pet disk (absolute, clean path; not a symlink): <VM_NAME>.qcow2 (overlay on the base) and <VM_NAME>.json"},
		{Name: "DISK_SIZE", Help: "virtual size of the overlay, e.g. 20Gi, a multiple of 512, at most 2048Ti (optional; grows the disk when its volume has room, never shrinks it)"},
		{Name: artifact.CDROMsVar, Help: "read-only ISOs put into IMAGE_DIR beside the base (downloaded, resumed and cached the same way; verified to be ISO 9660), the installer first: a JSON array of {source, sha256, target} (optional; at most 6)"},
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
	// Artifact is the base image (IMG_SOURCE, IMG_TARGET, IMG_SHA256).
	Artifact
	// Blank is true when IMG_SOURCE is empty: the pet disk is a blank qcow2
	// of DISK_SIZE (an OS is installed on it from an ISO), there is no base.
	Blank bool
	// CDROMs are the read-only ISOs put into the cache beside the base
	// (CDROMS), the installer first.
	CDROMs   []Artifact
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
func (p Plan) BasePath() string { return p.base().Path() }

// RecordPath is the base image's recorded sha256 (sha256sum format).
func (p Plan) RecordPath() string { return p.base().RecordPath() }

// base is the base image's place in the cache.
func (p Plan) base() entry { return entry{p.Artifact, p.ImageDir} }

// cdroms are the ISOs' places in the cache.
func (p Plan) cdroms() []entry {
	var es []entry
	for _, a := range p.CDROMs {
		es = append(es, entry{a, p.ImageDir})
	}
	return es
}

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

	if p.Blank, err = env.Bool("DISK_BLANK", false); err != nil {
		return p, err
	}
	src, ok := env.Lookup("IMG_SOURCE")
	switch {
	case !ok && !p.Blank:
		return p, stage.BadInput("IMG_SOURCE", "", "must be set: an http:// or https:// URL or an absolute path (or DISK_BLANK=true for a blank pet disk, to install an OS on from CDROMS)")
	case ok && p.Blank:
		return p, stage.BadInputf("DISK_BLANK", "true", "a blank pet disk has no base image: IMG_SOURCE must be empty (is %q)", RedactText(src))
	}
	p.Artifact = Artifact{Var: "IMG_SOURCE", Kind: KindBase, Source: src}
	defTarget := ""
	if !p.Blank {
		if p.Remote, defTarget, err = checkSource("IMG_SOURCE", src, stat); err != nil {
			return p, err
		}
	}
	if p.Blank {
		for _, v := range []string{"IMG_TARGET", "IMG_SHA256"} {
			if val, ok := env.Lookup(v); ok && val != "" {
				return p, stage.BadInput(v, val, "must be empty with DISK_BLANK=true (a blank pet disk has no base image)")
			}
		}
	}

	if !p.Blank {
		tv, set := env.Lookup("IMG_TARGET")
		if !set {
			tv = defTarget
		}
		if err := artifact.CheckTarget(tv); err != nil {
			if !set {
				return p, stage.BadInputf("IMG_TARGET", tv, "the base name of IMG_SOURCE %q is not usable as IMG_TARGET (%v): set IMG_TARGET", RedactText(src), err)
			}
			return p, stage.BadInputf("IMG_TARGET", tv, "%v", err)
		}
		p.Target = tv

		if h, ok := env.Lookup("IMG_SHA256"); ok {
			if p.SHA256, err = artifact.CheckSHA256(h); err != nil {
				return p, stage.BadInput("IMG_SHA256", h, err.Error())
			}
		}
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
	if p.CDROMs, err = cdromsFromEnv(env, p, stat); err != nil {
		return p, err
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
	if p.Blank && p.DiskSize == 0 {
		return p, stage.BadInput("DISK_SIZE", "", "must be set with DISK_BLANK=true: the blank pet disk's size ("+quantity.Allowed+")")
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

// String prints the plan for --dry-run and the log.
func (p Plan) String() string {
	var b strings.Builder
	kind := "local file"
	if p.Remote {
		kind = "http download"
	}
	if p.Blank {
		fmt.Fprintf(&b, "source:   none (DISK_BLANK=true): the pet disk is blank\n")
	} else {
		fmt.Fprintf(&b, "source:   %s (%s)\n", RedactText(p.Source), kind)
	}
	if p.Remote || slices.ContainsFunc(p.CDROMs, func(a Artifact) bool { return a.Remote }) {
		fmt.Fprintf(&b, "download: %s\n", p.Fetch)
	}
	if !p.Blank {
		fmt.Fprintf(&b, "base:     %s (+ .sha256)\n", p.BasePath())
		fmt.Fprintf(&b, "sha256:   %s\n", p.Artifact.sha256Text())
	}
	for _, e := range p.cdroms() {
		fmt.Fprintf(&b, "%s: %s from %s, sha256 %s\n", e.Var, e.Path(), RedactText(e.Source), e.sha256Text())
	}
	if p.Blank {
		fmt.Fprintf(&b, "disk:     %s (+ %s), blank qcow2 without a backing file\n", p.OverlayPath(), filepath.Base(p.OverlayRecordPath()))
	} else {
		fmt.Fprintf(&b, "overlay:  %s (+ %s)\n", p.OverlayPath(), filepath.Base(p.OverlayRecordPath()))
	}
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
