package hostile

import (
	"bufio"
	"regexp"
	"strings"
)

// envLine is one variable of a stage's -h: two spaces, the name, spaces.
var envLine = regexp.MustCompile(`^  ([A-Z][A-Z0-9_]*)\s+\S`)

// ParseHelpVars returns the variables listed under "Environment:" in the
// output of `<stage> -h`, in order.
func ParseHelpVars(help string) []string {
	var vars []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Environment:"):
			in = true
		case in && line == "":
			in = false
		case in:
			if m := envLine.FindStringSubmatch(line); m != nil {
				vars = append(vars, m[1])
			}
		}
	}
	return vars
}

// usageVar is a variable named in free text: upper case with an underscore.
var usageVar = regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b`)

// ParseUsageVars returns the variables named in a usage text (`vmm probe`'s,
// which has no Environment section), each once, in order.
func ParseUsageVars(usage string) []string {
	var vars []string
	seen := map[string]bool{}
	for _, v := range usageVar.FindAllString(usage, -1) {
		if !seen[v] {
			seen[v] = true
			vars = append(vars, v)
		}
	}
	return vars
}
