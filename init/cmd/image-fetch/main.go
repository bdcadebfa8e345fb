// Command image-fetch is Berth's second init container: it puts a verified base
// image into the image cache and makes the VM's pet overlay. See docs/image-fetch.md.
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/fetch"
)

func main() {
	stage.Legacy(stage.Spec{
		Name: "image-fetch",
		Summary: "Fetch the base image (http(s) or a local path) into IMAGE_DIR, resumably, verify its sha256\n" +
			"and that qemu-img sees a self-contained qcow2 or raw image, then make the pet overlay\n" +
			"DISK_DIR/<VM_NAME>.qcow2 on it once (never overwritten; grown to DISK_SIZE).",
		Vars:  fetch.Vars,
		Check: true,
	}, fetch.Main)
}
