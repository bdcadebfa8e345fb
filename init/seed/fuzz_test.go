package seed

import (
	"bytes"
	"encoding/json"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/berth-vm/berth/common/stage"
)

// FuzzSeed: for any user-data and meta-data, NewPlan never panics, refuses
// only with bad input, and an accepted seed reads back (with the iso9660
// library) to exactly the user-data bytes and to meta-data equal to the
// input's, plus the identity keys. The same input always gives the same image.
func FuzzSeed(f *testing.F) {
	f.Add([]byte("#cloud-config\npackages: [htop]\n"), []byte("instance-id: a\nlocal-hostname: b\n"), false)
	f.Add([]byte("#!/bin/sh\necho hi\n"), []byte("uuid: u\nhostname: h\npublic_keys:\n  k: "+keyEd+"\n"), true)
	f.Add([]byte{0x1f, 0x8b, 0, 1, 2}, []byte(""), false)
	f.Add([]byte(""), []byte("a: {b: [1, 2.5, true, null, '2001-12-14T21:59:43Z', 2001-12-14]}\n"), true)
	f.Add([]byte("#cloud-config\n- a\n"), []byte("- x\n"), false)
	f.Add([]byte("#cloud-config\na: &x [1]\nb: *x\n"), []byte("1: one\n? [a]\n: b\n"), true)
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\n\n--x--\n"), []byte("x: 'yes'\ny: yes\nz: 0o17\nw: 017\n"), false)
	f.Add([]byte(mimeDoc("text/cloud-config", "base64", "I2Nsb3VkLWNvbmZpZwphOiAxCg==")), []byte("{}"), true)
	f.Add([]byte("\n #CLOUD-CONFIG-archive\n- {a: 1}\n"), []byte("public-keys: "+keyEd+"\n"), false)
	f.Fuzz(func(t *testing.T, ud, md []byte, nocloud bool) {
		format := FormatConfigDrive
		if nocloud {
			format = FormatNoCloud
		}
		cfg := Config{VMName: "vm-0", Format: format, RunDir: "/run/berth"}
		in := Inputs{
			UserData: Source{Var: "USERDATA", Path: "/userdata", Data: ud, Present: len(ud) > 0},
			MetaData: Source{Var: "METADATA", Path: "/metadata", Data: md, Present: true},
		}
		p, err := NewPlan(cfg, in)
		if err != nil {
			if !stage.IsBadInput(err) {
				t.Fatalf("refused with an error that is not bad input: %v", err)
			}
			return
		}
		again, err := NewPlan(cfg, in)
		if err != nil || !bytes.Equal(again.Image, p.Image) {
			t.Fatalf("the same input gave another image (err %v)", err)
		}
		_, files := readISO(t, p.Image)

		udPath, mdPath := ConfigDriveUserData, ConfigDriveMetaData
		if nocloud {
			udPath, mdPath = NoCloudUserData, NoCloudMetaData
		}
		gotUD, ok := files[udPath]
		switch {
		case in.UserData.Present && (!ok || !bytes.Equal(gotUD, ud)):
			t.Fatalf("user-data read back as %q, want %q", gotUD, ud)
		case !in.UserData.Present && !nocloud && ok:
			t.Fatalf("user-data file without user-data")
		case !in.UserData.Present && nocloud && (!ok || len(gotUD) != 0):
			t.Fatalf("NoCloud seed without an empty user-data file")
		}

		want, err := ParseMetaData(in.MetaData)
		if err != nil {
			t.Fatal(err)
		}
		want = withoutIdentity(want)
		var got map[string]any
		if nocloud {
			want["instance-id"], want["local-hostname"] = p.InstanceID, p.Hostname
			if len(p.Keys) > 0 {
				want["public-keys"] = p.Keys
			}
			if err := yaml.Unmarshal(files[mdPath], &got); err != nil {
				t.Fatalf("meta-data does not parse back: %v\n%s", err, files[mdPath])
			}
			n, err := normalize(got)
			if err != nil {
				t.Fatal(err)
			}
			got = n.(map[string]any)
		} else {
			want["uuid"], want["hostname"] = p.InstanceID, p.Hostname
			if _, ok := want["name"]; !ok {
				want["name"] = "vm-0"
			}
			if len(p.Keys) > 0 {
				var pk map[string]any
				json.Unmarshal(files[mdPath], &struct {
					PK *map[string]any `json:"public_keys"`
				}{&pk})
				want["public_keys"] = pk
				if len(pk) != len(p.Keys) {
					t.Fatalf("public_keys %v, want %d keys", pk, len(p.Keys))
				}
			}
			dec := json.NewDecoder(bytes.NewReader(files[mdPath]))
			dec.UseNumber() // big integers stay exact
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("meta_data.json does not parse back: %v", err)
			}
		}
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if !bytes.Equal(wj, gj) {
			t.Fatalf("meta-data round trip:\n got %s\nwant %s\nfile:\n%s", gj, wj, files[mdPath])
		}
	})
}

// FuzzParseYAML: the YAML checks (positions, tabs, escapes, block headers)
// never panic, and a position, when given, lies inside the document.
func FuzzParseYAML(f *testing.F) {
	f.Add([]byte("#cloud-config\na:\tb\n"))
	f.Add([]byte("a: \"x\\'\\/\"\nb: |#\n  t\n? [k]\n: v\n"))
	f.Add([]byte("a: |\n  x\n\t\n'k\t': \"\\\n\t\"\n"))
	f.Add([]byte("é: ü\tx # \t\n%YAML 1.2\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, ye := parseYAML(data)
		if ye == nil {
			return
		}
		lines, _ := splitLines(data)
		if ye.Line < 0 || ye.Line > len(lines)+1 || ye.Column < 0 {
			t.Fatalf("position %d:%d outside a document of %d lines: %v", ye.Line, ye.Column, len(lines), ye)
		}
	})
}
