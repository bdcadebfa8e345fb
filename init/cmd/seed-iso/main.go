// Command seed-iso is the third init container of a Berth VM pod: it writes
// the cloud-init seed ($BERTH_RUN_DIR/seed.iso) from user-data, meta-data and
// SSH keys. See docs/seed-iso.md.
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/seed"
)

func main() {
	stage.Legacy(stage.Spec{
		Name: "seed-iso",
		Summary: "Writes $BERTH_RUN_DIR/seed.iso, the cloud-init seed of the VM: a config-drive (label config-2)\n" +
			"or a NoCloud seed (label cidata) holding user-data, meta-data, the instance id and SSH keys.\n" +
			"The same input gives the same bytes; an identical seed.iso is left alone.",
		Vars:  seed.Vars,
		Check: true,
	}, run)
}

func run(r stage.Run) error {
	cfg, err := seed.ConfigFromEnv(r.Env)
	if err != nil {
		return err
	}
	in, err := seed.Load(cfg)
	if err != nil {
		return err
	}
	plan, err := seed.NewPlan(cfg, in)
	if err != nil {
		return err
	}
	if r.DryRun {
		plan.Print(r.Stdout)
		return nil
	}
	if r.Check {
		if err := plan.Check(); err != nil {
			return err
		}
		r.Log.Info("seed.iso matches the inputs", "path", plan.Output)
		return nil
	}
	changed, err := plan.Apply()
	if err != nil {
		return err
	}
	r.Log.Info("seed ready", "path", plan.Output, "changed", changed, "format", plan.Format,
		"label", plan.Label, "instance_id", plan.InstanceID, "hostname", plan.Hostname,
		"ssh_keys", len(plan.Keys), "user_data", plan.UserData, "bytes", len(plan.Image))
	return nil
}
