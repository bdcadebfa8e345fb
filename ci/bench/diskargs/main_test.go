package main

import (
	"strings"
	"testing"

	"github.com/berth-vm/berth/vmm/qemu"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name, disk, aio, blockDevice string
		want                         []string // lines of the output, in order
		wantErr                      string
	}{
		{
			name: "Filesystem, vmm's aio",
			disk: `{"name":"b-fs","size":"256Mi"}`,
			want: []string{
				"drive=if=none,id=disk-b-fs,file=/vol/b-fs/b-fs.qcow2,format=qcow2,cache=none,aio=" + qemu.AIOFilesystem + ",discard=unmap,detect-zeroes=unmap,werror=enospc,rerror=report",
				"device=virtio-blk-pci,drive=disk-b-fs,serial=b-fs",
				"vmm-aio=" + qemu.AIOFilesystem,
			},
		},
		{
			name: "Filesystem, aio swapped",
			disk: `{"name":"b-fs","size":"256Mi","cache":"none"}`, aio: "native",
			want: []string{
				"drive=if=none,id=disk-b-fs,file=/vol/b-fs/b-fs.qcow2,format=qcow2,cache=none,aio=native,discard=unmap,detect-zeroes=unmap,werror=enospc,rerror=report",
				"device=virtio-blk-pci,drive=disk-b-fs,serial=b-fs",
				"vmm-aio=" + qemu.AIOFilesystem,
			},
		},
		{
			name: "Block on the bench's loop device",
			disk: `{"name":"b-blk","size":"256Mi","volumeMode":"Block"}`, aio: "io_uring", blockDevice: "/dev/loop7",
			want: []string{
				"drive=if=none,id=disk-b-blk,file.driver=host_device,file.filename=/dev/loop7,format=raw,cache=none,aio=io_uring,discard=unmap,detect-zeroes=unmap,werror=enospc,rerror=report",
				"device=virtio-blk-pci,drive=disk-b-blk,serial=b-blk",
				"vmm-aio=" + qemu.AIOBlock,
			},
		},
		{name: "unknown aio", disk: `{"name":"b-fs","size":"256Mi"}`, aio: "posix", wantErr: `-aio "posix"`},
		{name: "block device for a file", disk: `{"name":"b-fs","size":"256Mi"}`, blockDevice: "/dev/loop7", wantErr: "-block-device for a Filesystem disk"},
		{name: "a disk DATA_DISKS refuses", disk: `{"name":"b-fs"}`, wantErr: "DATA_DISKS"},
		{name: "two disks", disk: `{"name":"a","size":"1Mi"},{"name":"b","size":"1Mi"}`, wantErr: "want one disk, got 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := run(&out, "/vol", tc.disk, tc.aio, tc.blockDevice)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := out.String(), strings.Join(tc.want, "\n")+"\n"; got != want {
				t.Errorf("output:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
