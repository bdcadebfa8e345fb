// Package vmm is the stage: read the config, decide the accelerator, build the
// command line, then run and supervise QEMU.
package vmm

import (
	"fmt"
	"os"
	"runtime"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/qemu"
)

// Run is vmm's main, called by stage.Main.
func Run(r stage.Run) error {
	host := config.Host{NumCPU: runtime.NumCPU(), Stat: os.Stat}
	c, err := config.FromEnv(r.Env, host)
	if err != nil {
		return err
	}
	if err := config.CheckFiles(c, host); err != nil {
		return err
	}
	p := qemu.Plan{Config: c, Accel: config.AccelTCG, VNCPassword: c.VNCPasswordFile != ""}
	args := qemu.Args(p)
	if r.DryRun {
		_, err := fmt.Fprint(r.Stdout, qemu.Explain(c.QEMU, args))
		return err
	}
	return fmt.Errorf("not implemented yet")
}
