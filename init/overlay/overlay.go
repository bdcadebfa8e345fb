// Package overlay makes the VM's pet disk: a qcow2 overlay on the cached base
// image, created once and never overwritten, plus a JSON record of the base it
// was made from, so a pet disk is never paired with another base.
package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/diskroom"
	"github.com/berth-vm/berth/init/qemuimg"
)

// Record is DISK_DIR/<VM_NAME>.json.
type Record struct {
	// Blank: made without a base (IMG_SOURCE empty, an OS installed from an
	// ISO); Base, BasePath, Format and SHA256 are then empty, and the overlay
	// has no backing file.
	Blank    bool   `json:"blank,omitempty"`
	Base     string `json:"base"`             // IMG_TARGET, the base's file name in IMAGE_DIR
	BasePath string `json:"base_path"`        // the absolute backing file path written in the overlay
	Format   string `json:"format"`           // the base's format: qcow2 or raw (the overlay's backing_fmt)
	SHA256   string `json:"sha256"`           // the base's sha256
	Source   string `json:"source,omitempty"` // IMG_SOURCE it was fetched from, redacted (no userinfo, query or fragment)
	Created  string `json:"created"`          // RFC 3339, UTC
}

// ReadRecord returns the record of an existing overlay. exists is false when
// the overlay file does not exist (a record without its overlay is stale: it
// is left from a crash before the overlay was renamed into place). An overlay
// without a record is an error: nothing says which base it belongs to.
func ReadRecord(overlayPath, recordPath string) (rec Record, exists bool, err error) {
	if _, err := os.Lstat(overlayPath); errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	} else if err != nil {
		return Record{}, false, fmt.Errorf("pet disk %s: %w", overlayPath, err)
	}
	// qemu-img follows symlinks: a link (or a FIFO, a directory) where the pet
	// disk belongs is refused, never opened.
	if err := fsutil.CheckOwnFile(overlayPath); err != nil {
		return Record{}, true, fmt.Errorf("pet disk: %w", err)
	}
	b, err := fsutil.ReadRecord(recordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, true, fmt.Errorf("pet disk %s exists but its record %s does not: which base it was made from is unknown; "+
			"write the record (base, format, sha256 of the base) or move the disk away", overlayPath, recordPath)
	}
	if err != nil {
		return Record{}, true, fmt.Errorf("pet disk record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil || !rec.valid() {
		return Record{}, true, fmt.Errorf("pet disk record %s is not valid (want base, format, sha256; or blank and none of them): %v", recordPath, err)
	}
	return rec, true, nil
}

// valid: a base's record names it and its hash; a blank disk's names none.
func (r Record) valid() bool {
	if r.Blank {
		return r.Base == "" && r.BasePath == "" && r.Format == "" && r.SHA256 == ""
	}
	return r.SHA256 != "" && r.Base != ""
}

// Spec is the overlay to ensure: on Base, or blank (Base.Blank, Size set).
type Spec struct {
	Path, RecordPath string
	Base             Record
	BaseVirtualSize  uint64
	Size             uint64 // wanted virtual size; 0 = keep (new overlay: the base's)
	SizeText         string // DISK_SIZE as written, for messages
	Timeout          time.Duration
}

func (s Spec) sizeText() string {
	if s.SizeText != "" {
		return s.SizeText
	}
	return strconv.FormatUint(s.Size, 10)
}

// Ensure creates the overlay if it does not exist, else checks it belongs to
// this base and grows it to Size. It never overwrites nor shrinks an overlay.
func Ensure(ctx context.Context, log *slog.Logger, s Spec) error {
	rec, exists, err := ReadRecord(s.Path, s.RecordPath)
	if err != nil {
		return err
	}
	if !exists {
		return create(ctx, log, s)
	}
	if rec.Blank != s.Base.Blank {
		return fmt.Errorf("pet disk %s: its record says blank=%v, wanted blank=%v: refusing to pair them", s.Path, rec.Blank, s.Base.Blank)
	}
	if rec.SHA256 != s.Base.SHA256 {
		return fmt.Errorf("pet disk %s was made from base sha256 %s, the base is %s: refusing to pair them", s.Path, rec.SHA256, s.Base.SHA256)
	}
	info, err := Info(ctx, s.Path, s.Timeout)
	if err != nil {
		return err
	}
	if info.Format != "qcow2" {
		return fmt.Errorf("pet disk %s is %q, want qcow2", s.Path, info.Format)
	}
	if info.FullBackingFilename != s.Base.BasePath {
		if s.Base.Blank {
			return fmt.Errorf("pet disk %s has backing file %q, but its record says it was made blank: refusing to use it", s.Path, info.FullBackingFilename)
		}
		return fmt.Errorf("pet disk %s has backing file %q, want %q (was IMAGE_DIR moved?)", s.Path, info.FullBackingFilename, s.Base.BasePath)
	}
	if info.BackingFormat != "" && info.BackingFormat != s.Base.Format {
		return fmt.Errorf("pet disk %s has backing format %q, the base is %q", s.Path, info.BackingFormat, s.Base.Format)
	}
	cur := uint64(info.VirtualSize)
	switch {
	case s.Size == 0 || s.Size == cur:
		log.Info("pet disk exists, kept", "overlay", s.Path, "virtual_size", cur, "base_sha256", rec.SHA256)
		return nil
	case s.Size < cur:
		return stage.BadInputf("DISK_SIZE", s.sizeText(), "is %d bytes, smaller than the pet disk's %d bytes: disks are never shrunk", s.Size, cur)
	}
	if err := fsutil.CheckOwnFile(s.Path); err != nil { // qemu-img follows symlinks
		return fmt.Errorf("pet disk: %w", err)
	}
	fit, err := diskroom.Measure(filepath.Dir(s.Path), s.Path, "qcow2", s.Size)
	if err != nil {
		return fmt.Errorf("pet disk: %w", err)
	}
	if !fit.OK() {
		// The PVC may grow later (an expansion still under way): the guest
		// keeps its disk as it is and vmm grows it online once there is room.
		log.Warn("pet disk not grown: its volume has no room for it; vmm grows it once the volume has room",
			"overlay", s.Path, "virtual_size", cur, "disk_size", s.Size, "volume_gives", fit.Gives(), "needs", fit.Need, "room", fit.String())
		return nil
	}
	if _, err := qemuimg.Run(ctx, s.Timeout, "resize", "-q", "-f", "qcow2", s.Path, strconv.FormatUint(s.Size, 10)); err != nil {
		return fmt.Errorf("grow pet disk %s to %d bytes: %w", s.Path, s.Size, err)
	}
	if err := fsutil.SyncFile(s.Path); err != nil {
		return err
	}
	log.Info("pet disk grown", "overlay", s.Path, "from", cur, "to", s.Size)
	return nil
}

func create(ctx context.Context, log *slog.Logger, s Spec) error {
	size := s.Size
	if size == 0 {
		size = s.BaseVirtualSize
	}
	if size < s.BaseVirtualSize {
		return stage.BadInputf("DISK_SIZE", s.sizeText(), "is %d bytes, smaller than the base image's %d bytes", s.Size, s.BaseVirtualSize)
	}
	dir, name := filepath.Split(s.Path)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := RoomToCreate(s.Path, size, s.SizeText); err != nil {
		return err
	}
	// Left by a crash: never in place, safe to drop; but only if it is a
	// regular file (qemu-img would write through a symlink).
	if err := fsutil.CheckOwnFile(tmp); err != nil {
		return fmt.Errorf("pet disk: %w", err)
	}
	_ = os.Remove(tmp)
	ok := false
	defer func() {
		if !ok && fsutil.CheckOwnFile(tmp) == nil {
			os.Remove(tmp)
		}
	}()
	if err := fsutil.CheckOwnFile(s.Path); err != nil {
		return fmt.Errorf("pet disk: %w", err)
	}
	args := []string{"create", "-q", "-f", "qcow2"}
	if !s.Base.Blank {
		// qemu-img create opens the backing file, and follows a symlink there.
		if err := fsutil.CheckOwnFile(s.Base.BasePath); err != nil {
			return fmt.Errorf("base image: %w", err)
		}
		args = append(args, "-F", s.Base.Format, "-b", s.Base.BasePath)
	}
	if _, err := qemuimg.Run(ctx, s.Timeout, append(args, tmp, strconv.FormatUint(size, 10))...); err != nil {
		return fmt.Errorf("create pet disk %s: %w", s.Path, err)
	}
	if err := fsutil.SyncFile(tmp); err != nil {
		return err
	}
	rec := s.Base
	rec.Created = time.Now().UTC().Format(time.RFC3339)
	b, _ := json.MarshalIndent(rec, "", "  ")
	// The record first: an overlay in place always has its record.
	if err := fsutil.WriteFileAtomic(s.RecordPath, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("pet disk record: %w", err)
	}
	// Never overwrite: link fails if the overlay appeared meanwhile.
	if err := os.Link(tmp, s.Path); err != nil {
		return fmt.Errorf("put pet disk %s in place: %w", s.Path, err)
	}
	ok = true
	_ = os.Remove(tmp)
	if err := fsutil.SyncDir(dir); err != nil {
		return err
	}
	if s.Base.Blank {
		log.Info("blank pet disk created", "disk", s.Path, "virtual_size", size)
		return nil
	}
	log.Info("pet disk created", "overlay", s.Path, "base", s.Base.BasePath, "format", s.Base.Format, "virtual_size", size)
	return nil
}

// RoomToCreate refuses a new pet disk of size bytes at path whose volume
// cannot hold it once the guest has written all of it (diskroom): exit 2
// naming DISK_SIZE (sizeText as written; "" when unset: the base's size)
// with both figures.
func RoomToCreate(path string, size uint64, sizeText string) error {
	dir := filepath.Dir(path)
	fit, err := diskroom.Measure(dir, path, "qcow2", size)
	if err != nil {
		return fmt.Errorf("pet disk: %w", err)
	}
	fit.Used = 0 // a new file: a temporary one left by a crash is removed first
	if fit.OK() {
		return nil
	}
	of := ""
	if sizeText == "" {
		of = " (DISK_SIZE unset: the base's virtual size)"
	}
	return stage.BadInputf("DISK_SIZE", sizeText, "the pet disk %s of %d bytes%s cannot be created: the volume is smaller than the disk needs: %s (give the PVC more room)", path, size, of, fit)
}

// ImageInfo is the part of qemu-img info read for an overlay.
type ImageInfo struct {
	Format              string `json:"format"`
	VirtualSize         int64  `json:"virtual-size"`
	FullBackingFilename string `json:"full-backing-filename"`
	BackingFormat       string `json:"backing-filename-format"`
}

// Info runs qemu-img info -f qcow2 on an overlay (the backing file is not
// opened; --force-share: --check may run while QEMU has the disk open).
func Info(ctx context.Context, path string, timeout time.Duration) (ImageInfo, error) {
	if err := fsutil.CheckOwnFile(path); err != nil { // qemu-img follows symlinks
		return ImageInfo{}, fmt.Errorf("pet disk: %w", err)
	}
	out, err := qemuimg.Run(ctx, timeout, "info", "-f", "qcow2", "--output=json", "--force-share", path)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("pet disk %s: %w", path, err)
	}
	var info ImageInfo
	if err := json.Unmarshal(out.Stdout, &info); err != nil {
		return ImageInfo{}, fmt.Errorf("pet disk %s: qemu-img info: %w", path, err)
	}
	return info, nil
}
