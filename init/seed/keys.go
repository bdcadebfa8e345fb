package seed

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/berth-vm/berth/common/stage"
)

// ParseAuthorizedKeys parses SSH public keys, one a line in authorized_keys
// format (options and comments allowed); blank lines and lines starting with
// '#' are skipped. A line that is not a key is bad input naming varName and the
// 1-based line number. The lines are returned trimmed, as written.
func ParseAuthorizedKeys(varName, text string) ([]string, error) {
	keys, bad, err := parseKeyLines(text)
	if err != nil {
		return nil, stage.BadInputf(varName, excerpt(bad.text), "line %d is not an SSH public key in authorized_keys format (%v)", bad.n, err)
	}
	return keys, nil
}

type badLine struct {
	n    int // 1-based
	text string
}

func parseKeyLines(text string) ([]string, badLine, error) {
	var out []string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkKey(line); err != nil {
			return nil, badLine{i + 1, line}, err
		}
		out = append(out, line)
	}
	return out, badLine{}, nil
}

// checkKey accepts exactly one authorized_keys line.
func checkKey(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("a key is one line")
	}
	_, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("trailing data after the key")
	}
	return nil
}

// excerpt shortens a value for an error line.
func excerpt(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// dedupe keeps the first of equal keys, in order.
func dedupe(keys []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func parseKey(line string) (ssh.PublicKey, string, []string, []byte, error) {
	return ssh.ParseAuthorizedKey([]byte(line))
}

func fingerprint(pk ssh.PublicKey) string { return ssh.FingerprintSHA256(pk) }
