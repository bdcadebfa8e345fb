// Package seed builds the cloud-init seed ISO of a Berth VM: a config-drive
// (label config-2) or a NoCloud seed (label cidata) from user-data, meta-data
// and SSH keys. Plan is pure; Apply writes $BERTH_RUN_DIR/seed.iso atomically
// and leaves an identical image alone.
package seed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/seed/isowrite"
)

// Seed formats (SEED_FORMAT).
const (
	FormatConfigDrive = "configdrive"
	FormatNoCloud     = "nocloud"
)

// Labels cloud-init looks for.
const (
	LabelConfigDrive = "config-2"
	LabelNoCloud     = "cidata"
)

// Config is what the environment says.
type Config struct {
	VMName       string
	Format       string
	UserDataPath string
	MetaDataPath string
	SSHKeys      string // SSH_AUTHORIZED_KEYS
	RunDir       string
}

// Vars documents the variables seed-iso reads (besides the common ones).
func Vars() []stage.Var {
	return []stage.Var{
		{Name: "USERDATA", Default: DefaultUserData, Help: "user-data: a file, or a ConfigMap directory (key user-data, or its only key); missing = none"},
		{Name: "METADATA", Default: DefaultMetaData, Help: "meta-data YAML mapping: a file, or a ConfigMap directory (key meta-data, or its only key); missing = none"},
		{Name: "SSH_AUTHORIZED_KEYS", Help: "SSH public keys for the default user, one a line; blank and # lines ignored"},
		{Name: "SEED_FORMAT", Default: FormatConfigDrive, Help: "configdrive (label config-2, openstack/latest/...) or nocloud (label cidata, meta-data and user-data)"},
	}
}

// Where the chart mounts the user-data and meta-data ConfigMaps (USERDATA,
// METADATA): seed-iso's own defaults, read by no other stage.
const (
	DefaultUserData = "/userdata"
	DefaultMetaData = "/metadata"
)

// FromEnv reads the environment.
func FromEnv(env stage.Env) (Config, error) {
	name, err := env.VMName()
	if err != nil {
		return Config{}, err
	}
	format, err := env.OneOf("SEED_FORMAT", FormatConfigDrive, FormatConfigDrive, FormatNoCloud)
	if err != nil {
		return Config{}, err
	}
	keys, _ := env.Lookup("SSH_AUTHORIZED_KEYS")
	cfg := Config{VMName: name, Format: format, SSHKeys: keys}
	if cfg.UserDataPath, err = env.Path("USERDATA", DefaultUserData); err != nil {
		return Config{}, err
	}
	if cfg.MetaDataPath, err = env.Path("METADATA", DefaultMetaData); err != nil {
		return Config{}, err
	}
	if cfg.RunDir, err = env.Path("BERTH_RUN_DIR", stage.DefaultRunDir); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Inputs are the files read.
type Inputs struct {
	UserData Source
	MetaData Source
}

// Load reads user-data and meta-data.
func Load(cfg Config) (Inputs, error) {
	ud, err := ReadSource("USERDATA", cfg.UserDataPath, "user-data")
	if err != nil {
		return Inputs{}, err
	}
	md, err := ReadSource("METADATA", cfg.MetaDataPath, "meta-data")
	if err != nil {
		return Inputs{}, err
	}
	return Inputs{UserData: ud, MetaData: md}, nil
}

// Plan is the seed to write.
type Plan struct {
	Format     string
	Label      string
	InstanceID string
	IDSource   string // "meta-data instance-id", "meta-data uuid" or "VM_NAME"
	Hostname   string
	Keys       []string
	UserData   string // what user-data is: none, cloud-config, script, ...
	Files      []isowrite.File
	Output     string
	Image      []byte
}

// NewPlan checks the inputs and renders the seed's files and image. It
// reads and writes nothing.
func NewPlan(cfg Config, in Inputs) (*Plan, error) {
	if err := CheckUserData(in.UserData); err != nil {
		return nil, err
	}
	md, err := ParseMetaData(in.MetaData)
	if err != nil {
		return nil, err
	}
	envKeys, err := ParseAuthorizedKeys("SSH_AUTHORIZED_KEYS", cfg.SSHKeys)
	if err != nil {
		return nil, err
	}
	mdKeys, keyNames, err := metaDataKeys(in.MetaData, md)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Format: cfg.Format,
		Keys:   dedupe(append(mdKeys, envKeys...)),
		Output: filepath.Join(cfg.RunDir, stage.SeedISOName),
	}
	p.InstanceID, p.IDSource, err = firstString(in.MetaData, md, "instance-id", "uuid")
	if err != nil {
		return nil, err
	}
	if p.InstanceID == "" {
		p.InstanceID, p.IDSource = InstanceID(cfg.VMName), "VM_NAME"
	}
	p.Hostname, _, err = firstString(in.MetaData, md, "local-hostname", "hostname")
	if err != nil {
		return nil, err
	}
	if p.Hostname == "" {
		p.Hostname = cfg.VMName
	}
	p.UserData = "none"
	if in.UserData.Present {
		p.UserData = UserDataKind(in.UserData.Data)
	}

	switch cfg.Format {
	case FormatConfigDrive:
		p.Label = LabelConfigDrive
		p.Files, err = configDriveFiles(p, cfg.VMName, md, keyNames, in)
	case FormatNoCloud:
		p.Label = LabelNoCloud
		p.Files, err = noCloudFiles(p, md, in)
	default:
		return nil, stage.BadInput("SEED_FORMAT", cfg.Format, "must be one of configdrive, nocloud")
	}
	if err != nil {
		return nil, err
	}
	p.Image, err = isowrite.Build(p.Label, p.Files)
	if err != nil {
		return nil, fmt.Errorf("build seed image: %w", err)
	}
	return p, nil
}

func firstString(src Source, md map[string]any, keys ...string) (string, string, error) {
	for _, k := range keys {
		s, ok, err := stringField(md, k)
		if err != nil {
			return "", "", stage.BadInputf(src.Var, src.Path, "meta-data: %v", err)
		}
		if ok {
			return s, "meta-data " + k, nil
		}
	}
	return "", "", nil
}

// withoutIdentity copies md without the identity keys of both formats, which
// are written under the chosen format's names instead.
func withoutIdentity(md map[string]any) map[string]any {
	out := make(map[string]any, len(md)+4)
	for k, v := range md {
		switch k {
		case "instance-id", "uuid", "local-hostname", "hostname", "public-keys", "public_keys":
			continue
		}
		out[k] = v
	}
	return out
}

// Paths inside the image.
const (
	ConfigDriveMetaData = "openstack/latest/meta_data.json"
	ConfigDriveUserData = "openstack/latest/user_data"
	NoCloudMetaData     = "meta-data"
	NoCloudUserData     = "user-data"
)

// configDriveFiles renders openstack/latest/meta_data.json (what cloud-init's
// ConfigDrive reader takes: uuid → instance-id, hostname → local-hostname,
// public_keys, name; the user's other keys are kept) and user_data.
func configDriveFiles(p *Plan, vmName string, md map[string]any, keyNames map[string]string, in Inputs) ([]isowrite.File, error) {
	out := withoutIdentity(md)
	out["uuid"] = p.InstanceID
	out["hostname"] = p.Hostname
	if _, ok := out["name"]; !ok {
		out["name"] = vmName
	}
	if len(p.Keys) > 0 {
		pk := map[string]any{}
		for i, k := range p.Keys {
			name := keyNames[k]
			if _, taken := pk[name]; name == "" || taken {
				name = fmt.Sprintf("key-%d", i+1)
			}
			for _, taken := pk[name]; taken; _, taken = pk[name] {
				name += "_"
			}
			pk[name] = k
		}
		out["public_keys"] = pk
	}
	js, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, stage.BadInputf("METADATA", in.MetaData.Path, "meta-data cannot be written as JSON: %v", err)
	}
	files := []isowrite.File{{Path: ConfigDriveMetaData, Data: append(js, '\n')}}
	if in.UserData.Present {
		files = append(files, isowrite.File{Path: ConfigDriveUserData, Data: in.UserData.Data})
	}
	return files, nil
}

// noCloudFiles renders meta-data (YAML: instance-id, local-hostname,
// public-keys, the user's other keys) and user-data. cloud-init's NoCloud
// reader requires both files on the device, so user-data is written empty
// when there is none (cloud-init treats empty user-data as no user-data).
func noCloudFiles(p *Plan, md map[string]any, in Inputs) ([]isowrite.File, error) {
	out := withoutIdentity(md)
	out["instance-id"] = p.InstanceID
	out["local-hostname"] = p.Hostname
	if len(p.Keys) > 0 {
		ks := make([]any, len(p.Keys))
		for i, k := range p.Keys {
			ks[i] = k
		}
		out["public-keys"] = ks
	}
	y, err := yaml.Marshal(out)
	if err != nil {
		return nil, stage.BadInputf("METADATA", in.MetaData.Path, "meta-data cannot be written as YAML: %v", err)
	}
	var udData []byte
	if in.UserData.Present {
		udData = in.UserData.Data
	}
	return []isowrite.File{
		{Path: NoCloudMetaData, Data: y},
		{Path: NoCloudUserData, Data: udData},
	}, nil
}

// Print writes the plan for --dry-run.
func (p *Plan) Print(out io.Writer) error {
	w := &strings.Builder{} // one write to out, its error returned
	sum := sha256.Sum256(p.Image)
	fmt.Fprintf(w, "seed-iso plan\n")
	fmt.Fprintf(w, "  output:      %s (%d bytes, sha256 %s)\n", p.Output, len(p.Image), hex.EncodeToString(sum[:]))
	fmt.Fprintf(w, "  format:      %s (volume label %s)\n", p.Format, p.Label)
	fmt.Fprintf(w, "  instance id: %s (from %s)\n", p.InstanceID, p.IDSource)
	fmt.Fprintf(w, "  hostname:    %s\n", p.Hostname)
	fmt.Fprintf(w, "  user-data:   %s\n", p.UserData)
	fmt.Fprintf(w, "  ssh keys:    %d\n", len(p.Keys))
	for _, k := range p.Keys {
		fmt.Fprintf(w, "    %s\n", keySummary(k))
	}
	fmt.Fprintf(w, "  files:\n")
	files := append([]isowrite.File(nil), p.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		fmt.Fprintf(w, "    /%-34s %d bytes\n", f.Path, len(f.Data))
	}
	_, err := io.WriteString(out, w.String())
	return err
}

// keySummary shows a key's type, fingerprint and comment, not all its bytes.
func keySummary(line string) string {
	pk, comment, _, _, err := parseKey(line)
	if err != nil {
		return excerpt(line)
	}
	s := pk.Type() + " " + fingerprint(pk)
	if comment != "" {
		s += " " + comment
	}
	return strings.TrimSpace(s)
}
