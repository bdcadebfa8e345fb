package fetch

import (
	"errors"
	"fmt"
	"os"

	"github.com/berth-vm/berth/common/stage"
)

// statFile checks that a local source is a readable regular file.
func statFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	return f.Close()
}

// Main is image-fetch: plan from the environment, print it on --dry-run, apply it.
func Main(r stage.Run) error {
	p, err := PlanFromEnv(r.Env, statFile)
	if err != nil {
		return err
	}
	if r.DryRun {
		fmt.Fprint(r.Stdout, p.String())
		return nil
	}
	return errors.New("apply: not implemented yet")
}
