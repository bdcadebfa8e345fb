package seed

import "github.com/berth-vm/berth/common/stage"

// Stage is seed-iso for stage.Main: the plan is the seed rendered from the
// environment and the files USERDATA and METADATA name.
func Stage() stage.Stage {
	return stage.Stage{
		Spec: stage.Spec{
			Name: "seed-iso",
			Summary: "Writes $BERTH_RUN_DIR/seed.iso, the cloud-init seed of the VM: a config-drive (label config-2)\n" +
				"or a NoCloud seed (label cidata) holding user-data, meta-data, the instance id and SSH keys.\n" +
				"The same input gives the same bytes; an identical seed.iso is left alone.",
			Vars: Vars(),
		},
		Plan: func(r stage.Run) (stage.Plan, error) {
			cfg, err := FromEnv(r.Env)
			if err != nil {
				return nil, err
			}
			in, err := Load(cfg)
			if err != nil {
				return nil, err
			}
			p, err := NewPlan(cfg, in)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	}
}
