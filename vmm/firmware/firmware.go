// Package firmware is the VM's firmware: SeaBIOS (QEMU's own, the default) or
// UEFI (OVMF from Debian's ovmf package, optionally with Secure Boot), and the
// VM's own UEFI variable store on its disk volume beside the pet overlay.
//
// The variable store is made once from OVMF's template and never overwritten,
// by the pet overlay's rules: a JSON record beside it names the template it
// was made from and whether Secure Boot was on; a store without its record, or
// a record that disagrees with the VM's firmware, is refused (exit 2), never
// replaced; nothing in the volume is opened through a symlink.
package firmware

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// The firmware kinds (FIRMWARE).
const (
	BIOS = "bios"
	UEFI = "uefi"
)

// DefaultOVMFDir is where Debian's ovmf package puts OVMF (OVMF_DIR).
const DefaultOVMFDir = "/usr/share/OVMF"

// OVMF's files: the 4 MiB builds (the variable store has room for Secure
// Boot's key databases). The code is read-only; a VM's variable store is a
// copy of a template: without keys, or with Microsoft's keys enrolled (the
// .ms template: PK and KEK from Red Hat's OVMF build, Microsoft's UEFI CA and
// Windows CA in db, so shim-signed distributions and Windows boot).
const (
	CodeFile           = "OVMF_CODE_4M.fd"
	SecureCodeFile     = "OVMF_CODE_4M.secboot.fd"
	VarsTemplate       = "OVMF_VARS_4M.fd"
	SecureVarsTemplate = "OVMF_VARS_4M.ms.fd"
)

// Spec is the firmware asked for (FIRMWARE, SECURE_BOOT, OVMF_DIR).
type Spec struct {
	Kind       string // BIOS or UEFI
	SecureBoot bool   // UEFI only: the SMM-protected secure build, Microsoft's keys enrolled
	OVMFDir    string
}

// UEFI says the VM boots OVMF.
func (s Spec) UEFI() bool { return s.Kind == UEFI }

// Code is OVMF's code file for the spec.
func (s Spec) Code() string {
	if s.SecureBoot {
		return filepath.Join(s.OVMFDir, SecureCodeFile)
	}
	return filepath.Join(s.OVMFDir, CodeFile)
}

// Template is the variable store's template for the spec.
func (s Spec) Template() string {
	if s.SecureBoot {
		return filepath.Join(s.OVMFDir, SecureVarsTemplate)
	}
	return filepath.Join(s.OVMFDir, VarsTemplate)
}

// VarsPath is the VM's UEFI variable store, DISK_DIR/<VM_NAME>.efivars.fd.
func VarsPath(diskDir, vm string) string { return filepath.Join(diskDir, vm+".efivars.fd") }

// RecordPath is the store's record, DISK_DIR/<VM_NAME>.efivars.json.
func RecordPath(diskDir, vm string) string { return filepath.Join(diskDir, vm+".efivars.json") }

// Record says what a variable store was made from.
type Record struct {
	Template       string `json:"template"`        // the template's file name (OVMF_VARS_4M.fd or OVMF_VARS_4M.ms.fd)
	TemplateSHA256 string `json:"template_sha256"` // the template's sha256 when the store was made
	SecureBoot     bool   `json:"secure_boot"`     // SECURE_BOOT when the store was made
	Size           int64  `json:"size"`            // bytes: the store's size never changes
	Created        string `json:"created"`         // RFC 3339, UTC
}

// Vars is the state of a VM's variable store.
type Vars struct {
	Path, RecordPath string
	Exists           bool   // the store exists (and matches its record)
	Record           Record // when Exists
}

// CheckFiles checks OVMF's code and template are regular files in the image
// (exit 2 naming FIRMWARE: the vmm image has no OVMF, or OVMF_DIR is wrong).
func (s Spec) CheckFiles() error {
	for _, f := range []string{s.Code(), s.Template()} {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() {
			return stage.BadInputf("FIRMWARE", s.Kind, "needs OVMF's %s, which is not a file in this vmm image (%v): use Berth's vmm image, which has Debian's ovmf, or set OVMF_DIR", f, errOrMode(err, fi))
		}
	}
	return nil
}

func errOrMode(err error, fi fs.FileInfo) any {
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	return fsutil.Describe(fi.Mode())
}

// Inspect reads the VM's variable store and its record without changing
// anything: a store that is not a regular file, has no record, or was made
// for the other Secure Boot setting or with another size is refused (exit 2);
// a record without a store is stale (a crash before the store was put in
// place) and Exists is false.
func (s Spec) Inspect(diskDir, vm string) (Vars, error) {
	v := Vars{Path: VarsPath(diskDir, vm), RecordPath: RecordPath(diskDir, vm)}
	fi, err := os.Lstat(v.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return v, nil
	}
	if err != nil {
		return v, fmt.Errorf("UEFI variable store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return v, stage.BadInputf("DISK_DIR", diskDir, "the UEFI variable store %s is %s, not a regular file: refused, left as it is", v.Path, fsutil.Describe(fi.Mode()))
	}
	b, err := fsutil.ReadRecord(v.RecordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return v, stage.BadInputf("DISK_DIR", diskDir, "the UEFI variable store %s exists but its record %s does not: what it was made from is unknown; "+
			"write the record or move the store away (the VM then starts from OVMF's template: its boot entries and enrolled keys are lost)", v.Path, v.RecordPath)
	}
	if err != nil {
		return v, stage.BadInputf("DISK_DIR", diskDir, "the UEFI variable store's record: %v", err)
	}
	if err := json.Unmarshal(b, &v.Record); err != nil || v.Record.Template == "" || v.Record.Size <= 0 {
		return v, stage.BadInputf("DISK_DIR", diskDir, "the UEFI variable store's record %s is not valid (want template, secure_boot, size): %v", v.RecordPath, err)
	}
	if v.Record.SecureBoot != s.SecureBoot {
		return v, stage.BadInputf("SECURE_BOOT", fmt.Sprint(s.SecureBoot), "the VM's UEFI variable store %s was made with SECURE_BOOT=%t (from %s): "+
			"its enrolled keys decide what boots, so it is not reused with the other setting; set SECURE_BOOT=%t again, "+
			"or move %s and %s away to start from the template (boot entries and keys are lost)",
			v.Path, v.Record.SecureBoot, v.Record.Template, v.Record.SecureBoot, v.Path, v.RecordPath)
	}
	if fi.Size() != v.Record.Size {
		return v, stage.BadInputf("DISK_DIR", diskDir, "the UEFI variable store %s is %d bytes, its record says %d: refused, left as it is (OVMF would not start with it)", v.Path, fi.Size(), v.Record.Size)
	}
	v.Exists = true
	return v, nil
}

// Ensure makes the store from the template when v does not exist: the copy is
// written to a temporary file opened without following symlinks, synced, its
// record written first, then linked into place (link never replaces a file
// that appeared meanwhile). An existing store is kept as it is.
func (s Spec) Ensure(v Vars) (created bool, err error) {
	if v.Exists {
		return false, nil
	}
	tmpl, err := os.ReadFile(s.Template())
	if err != nil {
		return false, fmt.Errorf("UEFI variable store template: %w", err)
	}
	dir, name := filepath.Split(v.Path)
	tmp := filepath.Join(dir, "."+name+".tmp")
	// Left by a crash: never in place, safe to drop; but only a regular file.
	if err := fsutil.CheckOwnFile(tmp); err != nil {
		return false, fmt.Errorf("UEFI variable store: %w", err)
	}
	_ = os.Remove(tmp)
	f, err := fsutil.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("UEFI variable store: %w", err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(tmpl); err != nil {
		return false, fmt.Errorf("UEFI variable store %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("UEFI variable store %s: fsync: %w", tmp, err)
	}
	sum := sha256.Sum256(tmpl)
	rec := Record{Template: filepath.Base(s.Template()), TemplateSHA256: hex.EncodeToString(sum[:]), SecureBoot: s.SecureBoot,
		Size: int64(len(tmpl)), Created: time.Now().UTC().Format(time.RFC3339)}
	b, _ := json.MarshalIndent(rec, "", "  ")
	// The record first: a store in place always has its record.
	if err := fsutil.WriteFileAtomic(v.RecordPath, append(b, '\n'), 0o644); err != nil {
		return false, fmt.Errorf("UEFI variable store record: %w", err)
	}
	if err := os.Link(tmp, v.Path); err != nil {
		return false, fmt.Errorf("put the UEFI variable store %s in place: %w", v.Path, err)
	}
	ok = true
	_ = os.Remove(tmp)
	return true, fsutil.SyncDir(dir)
}

// Open opens the store read-write for QEMU (its pflash writes variables into
// it), without following a symlink.
func Open(v Vars) (*os.File, error) {
	f, err := fsutil.OpenFile(v.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("UEFI variable store: %w", err)
	}
	return f, nil
}
