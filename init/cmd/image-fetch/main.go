// Command image-fetch is Berth's second init container: it puts a verified base
// image into the image cache and makes the VM's pet overlay. See docs/image-fetch.md.
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/fetch"
)

func main() {
	stage.Main(fetch.Stage())
}
