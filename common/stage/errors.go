// Package stage holds what every Berth binary shares: environment parsing with
// documented variables, logging, flags, exit codes and the termination log.
package stage

import (
	"errors"
	"fmt"
)

// InputError is bad input: the run stops with exit code 2 and one line that names
// the variable, the value and what is allowed. Nothing may have been changed
// when a stage returns it.
type InputError struct {
	Var     string // the environment variable (or flag) at fault
	Value   string // what it was set to
	Allowed string // what is allowed instead
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Allowed)
}

// BadInput returns an *InputError.
func BadInput(name, value, allowed string) error {
	return &InputError{Var: name, Value: value, Allowed: allowed}
}

// BadInputf returns an *InputError whose Allowed text is formatted.
func BadInputf(name, value, format string, args ...any) error {
	return &InputError{Var: name, Value: value, Allowed: fmt.Sprintf(format, args...)}
}

// IsBadInput reports whether err is, or wraps, an *InputError.
func IsBadInput(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// Exit codes shared by every stage (docs/design.md, "Exit codes and errors").
const (
	ExitOK       = 0
	ExitFailure  = 1 // retryable: Kubernetes restarts the container
	ExitBadInput = 2 // the input must change; retrying will not help
)

// ExitCode maps an error to the exit code of the contract.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case IsBadInput(err):
		return ExitBadInput
	default:
		return ExitFailure
	}
}
