package seed

import (
	"bytes"
	"compress/gzip"
	"io"

	"gopkg.in/yaml.v3"

	"github.com/berth-vm/berth/common/stage"
)

// UserDataKind names what user-data is, as far as seed-iso checks it.
func UserDataKind(data []byte) string {
	switch {
	case len(data) == 0:
		return "empty"
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(data, []byte("#cloud-config")):
		return "cloud-config"
	case bytes.HasPrefix(data, []byte("#!")):
		return "script"
	case bytes.HasPrefix(data, []byte("Content-Type: multipart/")) || bytes.HasPrefix(data, []byte("MIME-Version:")):
		return "mime-multipart"
	}
	return "other"
}

// CheckUserData refuses cloud-config that is not valid YAML, naming the line
// and column. Anything else (scripts, MIME multipart, gzip, include files) is
// passed to cloud-init unchanged: cloud-init decides what it is. user-data is
// never modified, only checked.
//
// A document whose first line is exactly "#cloud-config" must also be a
// mapping (or empty), as cloud-init requires; the other "#cloud-config-..."
// kinds (archive, jsonp) are only checked to be YAML.
//
// gzip-compressed user-data is checked the same way after decompression (at
// most MaxInputSize bytes of it); data that does not decompress is left to
// cloud-init, which then uses it as it is.
func CheckUserData(src Source) error {
	if !src.Present {
		return nil
	}
	data, what := src.Data, "cloud-config"
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		plain, ok := gunzip(data)
		if !ok {
			return nil
		}
		data, what = plain, "gzip-compressed cloud-config"
	}
	if !bytes.HasPrefix(data, []byte("#cloud-config")) {
		return nil
	}
	node, yerr := parseYAML(data)
	if yerr != nil {
		return stage.BadInputf(src.Var, src.Path, "invalid %s YAML at %v", what, yerr)
	}
	first, _, _ := bytes.Cut(data, []byte("\n"))
	if string(bytes.TrimRight(first, " \t\r")) != "#cloud-config" || node == nil {
		return nil
	}
	top := node
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if top.Kind == yaml.MappingNode || top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	return stage.BadInputf(src.Var, src.Path, "invalid %s at line %d, column %d: the document must be a mapping (key: value), not a %s", what, top.Line, top.Column, nodeKind(top))
}

// gunzip decompresses at most MaxInputSize bytes; ok is false when data is
// not whole gzip or is larger than that.
func gunzip(data []byte) ([]byte, bool) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, false
	}
	plain, err := io.ReadAll(io.LimitReader(zr, MaxInputSize+1))
	if err != nil || len(plain) > MaxInputSize {
		return nil, false
	}
	return plain, true
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar " + n.Tag
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
