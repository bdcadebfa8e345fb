package seed

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

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
	case isMIME(data):
		return "mime-multipart"
	}
	if k := typeFromStartsWith(data); k != "" {
		return k
	}
	return "other"
}

// typeFromStartsWith is cloud-init's handlers.type_from_starts_with for the
// kinds seed-iso checks: the text lower-cased and stripped of leading white
// space starts with "#cloud-config" (or -archive, -jsonp); "script" for "#!".
func typeFromStartsWith(data []byte) string {
	if !utf8.Valid(data) {
		return ""
	}
	lc := strings.ToLower(strings.TrimLeftFunc(string(data[:min(len(data), 64)]), unicode.IsSpace))
	switch {
	case strings.HasPrefix(lc, "#cloud-config-archive"):
		return "cloud-config-archive"
	case strings.HasPrefix(lc, "#cloud-config-jsonp"):
		return "cloud-config-jsonp"
	case strings.HasPrefix(lc, "#cloud-config"):
		return "cloud-config"
	case strings.HasPrefix(lc, "#!"):
		return "script"
	}
	return ""
}

// isMIME is cloud-init's test (user_data.convert_string): "mime-version:"
// within the first 4096 bytes.
func isMIME(data []byte) bool {
	return bytes.Contains(bytes.ToLower(data[:min(len(data), 4096)]), []byte("mime-version:"))
}

// CheckUserData refuses cloud-config that is not valid YAML, naming the line
// and column. user-data is never modified, only checked; what is not
// cloud-config (scripts, boothooks, #include, jinja templates, ...) is passed
// to cloud-init unchanged, and cloud-init decides what it is.
//
// Checked, as cloud-init recognizes them: plain cloud-config (first
// characters "#cloud-config", any case, after white space), inside gzip (at
// most MaxInputSize bytes decompressed), and the text/cloud-config parts of
// MIME multipart user-data. "#cloud-config" must be a YAML mapping (or empty):
// cloud-init ignores anything else with only a warning in the guest's log.
// "#cloud-config-archive" and "-jsonp" are only checked to be YAML. Data that
// does not decompress or parse as MIME is left to cloud-init.
func CheckUserData(src Source) error {
	if !src.Present {
		return nil
	}
	data, where := src.Data, ""
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		plain, ok := gunzip(data)
		if !ok {
			return nil
		}
		data, where = plain, "gzip-compressed "
	}
	if isMIME(data) {
		return checkMIME(src, data)
	}
	if err := checkCloudConfig(data, typeFromStartsWith(data)); err != nil {
		return stage.BadInputf(src.Var, src.Path, "invalid %s%v", where, err)
	}
	return nil
}

// checkCloudConfig checks one document of the given kind ("" = not
// cloud-config: nothing to check).
func checkCloudConfig(data []byte, kind string) error {
	if !strings.HasPrefix(kind, "cloud-config") {
		return nil
	}
	node, yerr := parseYAML(data)
	if yerr != nil {
		return fmt.Errorf("%s YAML at %v", kind, yerr)
	}
	if kind != "cloud-config" || node == nil {
		return nil
	}
	top := node
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if top.Kind == yaml.MappingNode || top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	return fmt.Errorf("%s at line %d, column %d: the document must be a mapping (key: value), not a %s", kind, top.Line, top.Column, nodeKind(top))
}

// checkMIME checks the cloud-config parts of MIME multipart user-data.
// Content types are taken as cloud-init takes them: text/plain and
// text/x-not-multipart parts are typed by their first characters.
func checkMIME(src Source, data []byte) error {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	n := 0
	var walk func(ctype string, body io.Reader, enc string) error
	walk = func(ctype string, body io.Reader, enc string) error {
		mt, params, err := mime.ParseMediaType(ctype)
		if err != nil {
			mt = "text/x-not-multipart"
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart() // decodes quoted-printable
				if err != nil {
					return nil // the end, or not parseable: cloud-init decides
				}
				ct := p.Header.Get("Content-Type")
				if ct == "" {
					ct = "text/plain"
				}
				if err := walk(ct, p, p.Header.Get("Content-Transfer-Encoding")); err != nil {
					return err
				}
			}
		}
		n++
		payload, err := io.ReadAll(io.LimitReader(body, MaxInputSize+1))
		if err != nil {
			return nil
		}
		if strings.EqualFold(strings.TrimSpace(enc), "base64") {
			if payload, err = base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(payload), nil))); err != nil {
				return nil
			}
		}
		kind := ""
		switch mt {
		case "text/cloud-config", "text/cloud-config-archive", "text/cloud-config-jsonp":
			kind = strings.TrimPrefix(mt, "text/")
		case "text/plain", "text/x-not-multipart":
			kind = typeFromStartsWith(payload)
		}
		if err := checkCloudConfig(payload, kind); err != nil {
			return stage.BadInputf(src.Var, src.Path, "MIME part %d (%s): invalid %v", n, mt, err)
		}
		return nil
	}
	ct := msg.Header.Get("Content-Type")
	if ct == "" {
		ct = "text/x-not-multipart"
	}
	return walk(ct, msg.Body, msg.Header.Get("Content-Transfer-Encoding"))
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
