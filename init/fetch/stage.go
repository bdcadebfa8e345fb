package fetch

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/overlay"
	"github.com/berth-vm/berth/init/qemuimg"
)

// statFile checks that a local source is a readable regular file.
func statFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0) // never blocks on a FIFO swapped in
	if err != nil {
		return err
	}
	return f.Close()
}

// Stage is image-fetch for stage.Main. Every URL it prints (logs, errors,
// the termination message, --dry-run, --check) is redacted: no userinfo,
// query or fragment.
func Stage() stage.Stage {
	return stage.Stage{
		Spec: stage.Spec{
			Name: "image-fetch",
			Summary: "Fetch the base image (http(s) or a local path) into IMAGE_DIR, resumably, verify its sha256\n" +
				"and that qemu-img sees a self-contained qcow2 or raw image, then make the pet overlay\n" +
				"DISK_DIR/<VM_NAME>.qcow2 on it once (never overwritten; grown to DISK_SIZE when its volume has room),\n" +
				"moving it first from DISK_LEGACY_DIR (an earlier chart's layout); then each data disk of DATA_DISKS\n" +
				"(created if missing, grown when its volume has room, never shrunk; a Block disk's size checked).",
			Vars: Vars(),
		},
		Plan: func(r stage.Run) (stage.Plan, error) {
			p, err := FromEnv(r.Env, statFile)
			if err != nil {
				return nil, redactErr(err)
			}
			return p, nil
		},
	}
}

// Print writes the plan and what is on disk now (DescribeState), redacted,
// for --dry-run.
func (p Plan) Print(w io.Writer) error {
	var b strings.Builder
	b.WriteString(p.String())
	DescribeState(&b, p)
	_, err := io.WriteString(w, RedactText(b.String()))
	return err
}

// Check compares the live state with the plan (see check), redacted, for
// --check.
func (p Plan) Check(r stage.Run) ([]string, error) {
	diffs, err := p.Legacy().Check()
	if err == nil {
		var more []string
		more, err = p.check(r.Ctx, qemuimg.DefaultTimeout)
		diffs = append(diffs, more...)
	}
	if err == nil {
		var more []string
		more, err = p.Data.Check(r.Ctx, qemuimg.DefaultTimeout)
		diffs = append(diffs, more...)
	}
	for i, d := range diffs {
		diffs[i] = RedactText(d)
	}
	return diffs, redactErr(err)
}

// Apply fetches the base and makes the pet overlay (Applier.Apply), logging
// and failing redacted.
func (p Plan) Apply(r stage.Run) error {
	log := RedactingLogger(r.Log)
	log.Info("image-fetch", "source", RedactText(p.Source), "base", p.BasePath(), "overlay", p.OverlayPath(), "pinned_sha256", p.SHA256, "disk_size", p.DiskSize, "data_disks", len(p.Data.Disks))
	a := NewApplier(log)
	p.Fetch.Apply(a.DL)
	return redactErr(a.Apply(r.Ctx, p))
}

// DescribeState prints what is on disk now and what Apply would do, reading
// only (no hashing, no qemu-img).
func DescribeState(w io.Writer, p Plan) {
	fmt.Fprintf(w, "now:\n")
	for _, f := range p.ownFiles() {
		if err := fsutil.CheckOwnFile(f); err != nil {
			fmt.Fprintf(w, "  refused: %v\n", err)
		}
	}
	if !p.Blank {
		p.base().describe(w)
	}
	for _, e := range p.cdroms() {
		e.describe(w)
	}
	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	switch {
	case err != nil:
		fmt.Fprintf(w, "  pet disk: %v\n", err)
	case exists && rec.Blank:
		fmt.Fprintf(w, "  pet disk exists (made blank): kept, never overwritten; grown if DISK_SIZE is larger\n")
	case exists:
		fmt.Fprintf(w, "  pet disk exists (base %s, sha256 %s): kept, never overwritten; grown if DISK_SIZE is larger\n", rec.Base, rec.SHA256)
	case p.Blank:
		fmt.Fprintf(w, "  pet disk missing: created blank with qemu-img create -f qcow2 (no backing file)\n")
	default:
		fmt.Fprintf(w, "  pet disk missing: created with qemu-img create -f qcow2 -F <format> -b %s\n", p.BasePath())
	}
	p.Legacy().Describe(w)
	p.Data.Describe(context.Background(), w)
}
