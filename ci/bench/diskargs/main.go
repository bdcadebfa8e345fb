// Command diskargs prints the QEMU options vmm renders for one data disk
// (vmm/qemu.Args with that disk in DATA_DISKS), so the disk bench
// (ci/bench/disk.sh) measures Berth's own options rather than a copy of them.
//
//	diskargs -dir DATA_DISK_DIR -disk '{"name":"b-fs","size":"512Mi","cache":"none"}' [-aio threads] [-block-device /dev/loop3]
//
// Output, one a line: drive=<the -drive value>, device=<the -device value>,
// vmm-aio=<the aio vmm chose>. -aio replaces vmm's aio (the bench measures
// the other modes too); -block-device replaces a Block disk's device path
// (disks.BlockDir/<name> in the pod) with the one the bench made. Exit 2 on
// bad flags or a disk DATA_DISKS would refuse.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/qemu"
)

var aioOption = regexp.MustCompile(`(^|,)aio=[a-z_]+`)

func main() {
	dir := flag.String("dir", disks.DefaultDir, "DATA_DISK_DIR: a Filesystem disk is <dir>/<name>/<name>.<format>")
	disk := flag.String("disk", "", "one disk as DATA_DISKS holds it (JSON object)")
	aio := flag.String("aio", "", "aio to measure instead of vmm's (threads, native, io_uring)")
	blockDevice := flag.String("block-device", "", "a Block disk's device, instead of "+disks.BlockDir+"/<name>")
	flag.Parse()
	if err := run(os.Stdout, *dir, *disk, *aio, *blockDevice); err != nil {
		fmt.Fprintln(os.Stderr, "diskargs:", err)
		os.Exit(2)
	}
}

func run(w io.Writer, dir, disk, aio, blockDevice string) error {
	list, err := disks.Parse("[" + disk + "]")
	if err != nil {
		return err
	}
	if len(list) != 1 {
		return fmt.Errorf("-disk: want one disk, got %d", len(list))
	}
	d := list[0]
	if aio != "" && aio != "threads" && aio != "native" && aio != "io_uring" {
		return fmt.Errorf("-aio %q: want threads, native or io_uring", aio)
	}
	args := qemu.Args(qemu.Plan{Config: config.Config{Name: "bench", DataDiskDir: dir, DataDisks: list, CPUs: 1, Memory: 1 << 30}})
	id := "id=" + qemu.DataDrive(d.Name) + ","
	var drive, device string
	for _, a := range args {
		switch {
		case a.Flag == "-drive" && strings.Contains(a.Value, id):
			drive = a.Value
		case a.Flag == "-device" && strings.Contains(a.Value, "drive="+qemu.DataDrive(d.Name)+","):
			device = a.Value
		}
	}
	if drive == "" || device == "" {
		return fmt.Errorf("vmm rendered no drive and device for disk %s", d.Name)
	}
	vmmAIO := qemu.AIO(d.Block(), d.Cache)
	if aio != "" {
		if !aioOption.MatchString(drive) {
			return fmt.Errorf("vmm's drive for %s has no aio= to replace: %s", d.Name, drive)
		}
		drive = aioOption.ReplaceAllString(drive, "${1}aio="+aio)
	}
	if blockDevice != "" {
		if !d.Block() {
			return fmt.Errorf("-block-device for a %s disk", d.VolumeMode)
		}
		drive = strings.Replace(drive, "file.filename="+d.Path(dir), "file.filename="+blockDevice, 1)
	}
	_, err = fmt.Fprintf(w, "drive=%s\ndevice=%s\nvmm-aio=%s\n", drive, device, vmmAIO)
	return err
}
