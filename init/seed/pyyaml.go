package seed

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// pyYAMLQuirks refuses what libyaml (so yaml.v3) loads and PyYAML, the
// parser cloud-init uses, does not: tabs between tokens (checkTabs), escapes
// PyYAML does not know in double-quoted scalars ("\'"), a '#' glued to a
// block scalar header ("|#"), and mapping keys that are mappings or lists
// (PyYAML cannot hash them).
func pyYAMLQuirks(data []byte, doc *yaml.Node) *yamlError {
	if ye := checkTabs(data, doc); ye != nil {
		return ye
	}
	return checkNodes(data, doc)
}

// pyEscapes are the characters PyYAML accepts after '\' in a double-quoted
// scalar (ESCAPE_REPLACEMENTS, ESCAPE_CODES, and a line break).
const pyEscapes = "0abt\tnvfre \"\\/N_LPxuU\r\n"

func checkNodes(data []byte, doc *yaml.Node) *yamlError {
	lines, starts := splitLines(data)
	var walk func(n *yaml.Node) *yamlError
	walk = func(n *yaml.Node) *yamlError {
		switch {
		case n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind == yaml.AliasNode && k.Alias != nil {
					k = k.Alias
				}
				if k.Kind == yaml.MappingNode || k.Kind == yaml.SequenceNode {
					return &yamlError{Line: n.Content[i].Line, Column: n.Content[i].Column, Msg: "a mapping key that is itself a mapping or a list: cloud-init's YAML parser (PyYAML) cannot load it"}
				}
			}
		case n.Kind == yaml.ScalarNode && n.Style&yaml.DoubleQuotedStyle != 0 && n.Line >= 1 && n.Line <= len(lines):
			start := starts[n.Line-1] + runeOffset(lines[n.Line-1], n.Column)
			end := quotedEnd(data, start)
			for j := start + 1; j < end-1; j++ {
				if data[j] != '\\' {
					continue
				}
				if !strings.ContainsRune(pyEscapes, rune(data[j+1])) {
					line, col := position(lines, starts, j)
					return &yamlError{Line: line, Column: col, Msg: fmt.Sprintf("unknown escape %q in a double-quoted string: cloud-init's YAML parser (PyYAML) refuses it; write \\\\ for a backslash", data[j:j+2])}
				}
				j++
			}
		case n.Kind == yaml.ScalarNode && n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 && n.Line >= 1 && n.Line <= len(lines):
			l := lines[n.Line-1]
			j := runeOffset(l, n.Column) + 1 // past '|' or '>'
			for j < len(l) && (l[j] == '+' || l[j] == '-' || l[j] >= '1' && l[j] <= '9') {
				j++
			}
			if j < len(l) && l[j] == '#' {
				return &yamlError{Line: n.Line, Column: utf8.RuneCount(l[:j]) + 1, Msg: "a '#' right after a block scalar indicator: cloud-init's YAML parser (PyYAML) wants a space before a comment"}
			}
		}
		for _, c := range n.Content {
			if ye := walk(c); ye != nil {
				return ye
			}
		}
		return nil
	}
	return walk(doc)
}

// splitLines splits data at YAML's line breaks (\r\n, \n, \r, NEL, LS,
// PS), as libyaml counts lines; each line keeps its break. starts holds the
// byte offset of every line, and len(data) last.
func splitLines(data []byte) (lines [][]byte, starts []int) {
	starts = []int{0}
	begin := 0
	for j := 0; j < len(data); {
		n := lineBreak(data[j:])
		if n == 0 {
			j++
			continue
		}
		j += n
		lines = append(lines, data[begin:j])
		starts = append(starts, j)
		begin = j
	}
	if begin < len(data) || len(lines) == 0 {
		lines = append(lines, data[begin:])
		starts = append(starts, len(data))
	}
	return lines, starts
}

// lineBreak returns the length of the line break at the start of b, or 0.
func lineBreak(b []byte) int {
	switch {
	case len(b) >= 2 && b[0] == '\r' && b[1] == '\n':
		return 2
	case len(b) >= 1 && (b[0] == '\n' || b[0] == '\r'):
		return 1
	case len(b) >= 2 && b[0] == 0xC2 && b[1] == 0x85:
		return 2
	case len(b) >= 3 && b[0] == 0xE2 && b[1] == 0x80 && (b[2] == 0xA8 || b[2] == 0xA9):
		return 3
	}
	return 0
}

// lineBody is a line without its line break.
func lineBody(l []byte) []byte {
	for j := range l {
		if lineBreak(l[j:]) == len(l)-j {
			return l[:j]
		}
	}
	return l
}

// runeOffset is the byte offset of the 1-based character column col in l.
func runeOffset(l []byte, col int) int {
	b := 0
	for c := 1; c < col && b < len(l); c++ {
		_, n := utf8.DecodeRune(l[b:])
		b += n
	}
	return b
}

// position is the 1-based line and character column of byte offset at.
func position(lines [][]byte, starts []int, at int) (int, int) {
	for i := range lines {
		if at < starts[i+1] {
			return i + 1, utf8.RuneCount(lines[i][:at-starts[i]]) + 1
		}
	}
	return len(lines), 1
}

// pyCompatible makes a copy of data that libyaml parses as PyYAML does,
// with every position unchanged: "\/" (an escape PyYAML knows and libyaml
// does not) becomes "\\".
func pyCompatible(data []byte) []byte {
	if !bytes.Contains(data, []byte("\\/")) {
		return data
	}
	out := append([]byte(nil), data...)
	for j := 0; j+1 < len(out); j++ {
		if out[j] == '\\' {
			if out[j+1] == '/' {
				out[j+1] = '\\'
			}
			j++
		}
	}
	return out
}

// checkTabs finds the tabs PyYAML (cloud-init's parser) refuses and libyaml
// (so yaml.v3) accepts: PyYAML's scanner skips only spaces between tokens,
// so a tab is allowed only inside a quoted scalar, inside a block scalar's
// content (after its indentation), or in a comment. Anywhere else ("key:\tv",
// "v\t# c", a line holding only a tab, "-\tx") safe_load fails with "found
// character '\t' that cannot start any token".
func checkTabs(data []byte, doc *yaml.Node) *yamlError {
	if bytes.IndexByte(data, '\t') < 0 {
		return nil
	}
	lines, starts := splitLines(data)
	// offset converts a 1-based line and character column to a byte offset.
	offset := func(line, col int) int {
		if line < 1 || line > len(lines) {
			return len(data)
		}
		return starts[line-1] + runeOffset(lines[line-1], col)
	}

	ok := make([]bool, len(data)) // positions where a tab is allowed
	var nodes []*yaml.Node
	var flatten func(n *yaml.Node)
	flatten = func(n *yaml.Node) {
		if n.Kind != yaml.DocumentNode {
			nodes = append(nodes, n)
		}
		for _, c := range n.Content {
			flatten(c)
		}
	}
	flatten(doc)

	for i, n := range nodes {
		if n.Kind != yaml.ScalarNode {
			continue
		}
		start := offset(n.Line, n.Column)
		switch {
		case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
			end := quotedEnd(data, start)
			for j := start; j < end; j++ {
				ok[j] = true
			}
		case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
			// content: the lines after the header, up to the next node's line
			last := len(lines)
			for _, m := range nodes[i+1:] {
				if m.Line > n.Line {
					last = min(m.Line-1, len(lines))
					break
				}
			}
			indent := -1
			for ln := n.Line + 1; ln <= last; ln++ {
				l := lineBody(lines[ln-1])
				s := 0
				for s < len(l) && l[s] == ' ' {
					s++
				}
				if s == len(l) {
					continue // blank
				}
				if indent < 0 {
					indent = s
				}
				if s >= indent && indent > 0 {
					for j := starts[ln-1] + indent; j < starts[ln-1]+len(l); j++ {
						ok[j] = true
					}
				}
			}
		}
	}

	// comments: from a '#' at a line start or after white space, outside the
	// regions above, to the end of the line
	for ln, l := range lines {
		comment := false
		for j := range l {
			at := starts[ln] + j
			switch {
			case comment || ok[at]:
				ok[at] = true
			case l[j] == '#' && (j == 0 || l[j-1] == ' ' || l[j-1] == '\t'):
				comment = true
				ok[at] = true
			case l[j] == '\t':
				return &yamlError{Line: ln + 1, Column: utf8.RuneCount(l[:j]) + 1,
					Msg: "a tab where cloud-init's YAML parser (PyYAML) allows only spaces; tabs may only appear inside quotes, block scalars and comments"}
			}
		}
	}
	return nil
}

// quotedEnd returns the offset just past the quoted scalar starting at
// data[start] (a ' or ").
func quotedEnd(data []byte, start int) int {
	if start >= len(data) {
		return start
	}
	q := data[start]
	for j := start + 1; j < len(data); j++ {
		switch {
		case q == '"' && data[j] == '\\':
			j++
		case data[j] == q && q == '\'' && j+1 < len(data) && data[j+1] == '\'':
			j++
		case data[j] == q:
			return j + 1
		}
	}
	return len(data)
}
