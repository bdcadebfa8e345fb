// Command seed-iso is the third init container of a Berth VM pod: it writes
// the cloud-init seed ($BERTH_RUN_DIR/seed.iso) from user-data, meta-data and
// SSH keys. See docs/seed-iso.md.
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/seed"
)

func main() {
	stage.Main(seed.Stage())
}
