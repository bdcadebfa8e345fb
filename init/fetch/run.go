package fetch

import (
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

// Main is image-fetch: plan from the environment, print it on --dry-run, apply
// it. Every URL it prints (logs, errors, the termination message, --dry-run)
// is redacted: no userinfo, query or fragment.
func Main(r stage.Run) error {
	r.Log = RedactingLogger(r.Log)
	return redactErr(run(r))
}

func run(r stage.Run) error {
	p, err := PlanFromEnv(r.Env, statFile)
	if err != nil {
		return err
	}
	if r.DryRun {
		var b strings.Builder
		b.WriteString(p.String())
		DescribeState(&b, p)
		fmt.Fprint(r.Stdout, RedactText(b.String()))
		return nil
	}
	if r.Check {
		if err := Check(r.Ctx, p, qemuimg.DefaultTimeout); err != nil {
			return err
		}
		fmt.Fprintf(r.Stdout, "ok: base %s verified, pet disk %s on it\n", p.BasePath(), p.OverlayPath())
		return nil
	}
	r.Log.Info("image-fetch", "source", RedactText(p.Source), "base", p.BasePath(), "overlay", p.OverlayPath(), "pinned_sha256", p.SHA256, "disk_size", p.DiskSize)
	st := NewStage(r.Log)
	p.Fetch.Apply(st.DL)
	return st.Apply(r.Ctx, p)
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
	if fi, err := os.Lstat(p.BasePath()); err == nil && fi.Mode().IsRegular() {
		sum, rerr := readRecord(p)
		if rerr != nil {
			sum = "no valid record: " + rerr.Error()
		}
		fmt.Fprintf(w, "  base cached (recorded sha256 %s): re-hashed and reused, nothing downloaded\n", sum)
	} else if fi, err := os.Lstat(p.partPath()); err == nil && fi.Mode().IsRegular() {
		fmt.Fprintf(w, "  partial download of %d bytes: continued if the server still serves the same version\n", fi.Size())
	} else {
		fmt.Fprintf(w, "  base not cached: fetched into %s, verified, renamed into place\n", p.partPath())
	}
	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	switch {
	case err != nil:
		fmt.Fprintf(w, "  pet disk: %v\n", err)
	case exists:
		fmt.Fprintf(w, "  pet disk exists (base %s, sha256 %s): kept, never overwritten; grown if DISK_SIZE is larger\n", rec.Base, rec.SHA256)
	default:
		fmt.Fprintf(w, "  pet disk missing: created with qemu-img create -f qcow2 -F <format> -b %s\n", p.BasePath())
	}
}
