package fetch

import (
	"fmt"
	"io"
	"os"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/imgcheck"
	"github.com/berth-vm/berth/init/overlay"
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
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	return f.Close()
}

// Main is image-fetch: plan from the environment, print it on --dry-run, apply it.
func Main(r stage.Run) error {
	p, err := PlanFromEnv(r.Env, statFile)
	if err != nil {
		return err
	}
	if r.DryRun {
		fmt.Fprint(r.Stdout, p.String())
		DescribeState(r.Stdout, p)
		return nil
	}
	if r.Check {
		if err := Check(r.Ctx, p, imgcheck.DefaultTimeout); err != nil {
			return err
		}
		fmt.Fprintf(r.Stdout, "ok: base %s verified, pet disk %s on it\n", p.BasePath(), p.OverlayPath())
		return nil
	}
	r.Log.Info("image-fetch", "source", p.Source, "base", p.BasePath(), "overlay", p.OverlayPath(), "pinned_sha256", p.SHA256, "disk_size", p.DiskSize)
	st := NewStage(r.Log)
	p.Fetch.Apply(st.DL)
	return st.Apply(r.Ctx, p)
}

// DescribeState prints what is on disk now and what Apply would do, reading
// only (no hashing, no qemu-img).
func DescribeState(w io.Writer, p Plan) {
	fmt.Fprintf(w, "now:\n")
	if _, err := os.Stat(p.BasePath()); err == nil {
		sum, rerr := readRecord(p)
		if rerr != nil {
			sum = "no valid record: " + rerr.Error()
		}
		fmt.Fprintf(w, "  base cached (recorded sha256 %s): re-hashed and reused, nothing downloaded\n", sum)
	} else if fi, err := os.Stat(p.partPath()); err == nil {
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
