package seed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	gy "github.com/goccy/go-yaml"
	gyparser "github.com/goccy/go-yaml/parser"
	"gopkg.in/yaml.v3"
)

// yamlError is a YAML document refused, with where.
type yamlError struct {
	Line, Column int // 1-based; 0 when unknown
	Msg          string
	v3Msg        string // yaml.v3's own message, when it refused the document
}

func (e *yamlError) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

var v3Line = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses one YAML document into a node tree (nil for an empty
// document). gopkg.in/yaml.v3, a port of libyaml like cloud-init's PyYAML,
// decides what is valid; its error names only the line where the enclosing
// construct starts, so the position comes from github.com/goccy/go-yaml when
// that parser fails on the same input (it reports line and column of the
// offending token).
//
// Differences with PyYAML's safe_load are closed here: a "%YAML 1.2"
// directive (libyaml refuses any version but 1.1, PyYAML loads it) is read
// as 1.1, and so is the escape "\/" (pyCompatible); tags safe_load has no
// constructor for (!custom, !!python/...) are refused, and so is what
// pyYAMLQuirks finds. TestYAMLAgreesWithPyYAML and
// TestMutationsAgreeWithPyYAML check the result against PyYAML itself.
func parseYAML(data []byte) (*yaml.Node, *yamlError) {
	data = pyCompatible(yamlVersion11(data))
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err == nil {
		var extra yaml.Node
		switch err2 := dec.Decode(&extra); {
		case errors.Is(err2, io.EOF):
			if ye := checkTags(&doc); ye != nil {
				return nil, ye
			}
			if ye := pyYAMLQuirks(data, &doc); ye != nil {
				return nil, ye
			}
			return &doc, nil
		case err2 == nil:
			return nil, &yamlError{Line: extra.Line, Column: extra.Column, Msg: "a second YAML document; only one is allowed"}
		default:
			err = err2
		}
	}
	ye := &yamlError{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	ye.v3Msg = ye.Msg
	if m := v3Line.FindStringSubmatch(err.Error()); m != nil {
		ye.Line, _ = strconv.Atoi(m[1])
		ye.Msg = m[2]
	}
	if line, col, msg, ok := goccyPosition(data); ok {
		ye.Line, ye.Column, ye.Msg = line, col, msg
	}
	return nil, ye
}

// goccyPosition returns where goccy/go-yaml's parser stops, if it does.
func goccyPosition(data []byte) (line, col int, msg string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, err := gyparser.ParseBytes(data, 0)
	var se *gy.SyntaxError
	if errors.As(err, &se) && se.Token != nil && se.Token.Position != nil && se.Token.Position.Line > 0 {
		return se.Token.Position.Line, se.Token.Position.Column, se.Message, true
	}
	return 0, 0, "", false
}

var yamlDirective = regexp.MustCompile(`(?m)^%YAML[ \t]+1\.[0-9]`)

// yamlVersion11 rewrites "%YAML 1.x" directives to "%YAML 1.1", byte for byte
// the same length so that positions do not move.
func yamlVersion11(data []byte) []byte {
	if !bytes.Contains(data, []byte("%YAML")) {
		return data
	}
	return yamlDirective.ReplaceAllFunc(data, func(m []byte) []byte {
		out := append([]byte(nil), m...)
		out[len(out)-1] = '1'
		return out
	})
}

// safeTags are the explicit tags PyYAML's SafeLoader constructs (yaml.v3
// short form). Implicit tags are resolved to these (or to !!merge for "<<"
// keys, which PyYAML handles too, but not as an explicit tag).
var safeTags = map[string]bool{
	"!!null": true, "!!bool": true, "!!int": true, "!!float": true, "!!binary": true,
	"!!timestamp": true, "!!omap": true, "!!pairs": true, "!!set": true, "!!str": true,
	"!!seq": true, "!!map": true,
}

func checkTags(n *yaml.Node) *yamlError {
	if n.Style&yaml.TaggedStyle != 0 && !safeTags[n.Tag] {
		return &yamlError{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("tag %s: cloud-init's YAML loader (safe_load) has no constructor for it", n.Tag)}
	}
	for _, c := range n.Content {
		if ye := checkTags(c); ye != nil {
			return ye
		}
	}
	return nil
}
