package hostile

import (
	"path/filepath"
	"strings"
)

// Ctx is what a class builds its value from: the variable's valid value and
// the hostile objects of the case's sandbox (a FIFO, a directory, symlinks).
type Ctx struct {
	Valid string // a valid value of the variable (its baseline, or examples)
	Root  string // the sandbox; every path a class names is under it
}

// Hostile objects every sandbox holds (made by the harness), relative to Root.
const (
	HFifo       = "hostile/fifo"
	HDir        = "hostile/dir"         // a directory with a file in it
	HFile       = "hostile/file"        // a regular file
	HLinkPet    = "hostile/link-pet"    // symlink to the pet disk
	HLinkPasswd = "hostile/link-passwd" // symlink to outside/passwd, the stand-in for /etc/passwd
	HDangling   = "hostile/dangling"    // symlink to nothing
	HComma      = "hostile/a,file=x"    // a file whose name has a comma (QEMU's option separator)
	HNewline    = "hostile/a\nb"        // a file whose name has a newline
	PetDisk     = "disk/pet.qcow2"
	Canary      = "outside/canary" // outside every volume: must never change
	Passwd      = "outside/passwd"
)

// Class is one named generator of hostile values.
type Class struct {
	Name string
	// Kinds it applies to; nil: every kind (the string classes).
	Kinds []Kind
	Value func(c Ctx) string
	// MayBeValid: some stage may rightly accept the value (" 1 ", "0007"); accepted,
	// it must give what the valid value gives.
	MayBeValid bool
	// Secret must appear in no output (stderr, stdout, the termination log).
	Secret string
}

// Applies reports whether the class is tried on a variable of kind k.
func (c Class) Applies(k Kind) bool {
	if c.Kinds == nil {
		return true
	}
	for _, x := range c.Kinds {
		if x == k {
			return true
		}
	}
	return false
}

func fixed(s string) func(Ctx) string { return func(Ctx) string { return s } }
func suffix(s string) func(Ctx) string {
	return func(c Ctx) string { return c.Valid + s }
}
func under(rel string) func(Ctx) string {
	return func(c Ctx) string { return filepath.Join(c.Root, rel) }
}

var (
	numbers = []Kind{KindID, KindCount, KindSize}
	paths   = []Kind{KindFile, KindDir, KindOut, KindSource, KindExec}
	files   = []Kind{KindFile, KindOut, KindSource, KindExec} // a file is expected
)

// Classes is the catalogue. A new class here is swept over every variable
// of the kinds it names, in every stage, without another test.
var Classes = []Class{
	// Strings: every kind.
	{Name: "empty", Value: fixed("")},
	{Name: "space-only", Value: fixed("   ")},
	{Name: "tab-newline-only", Value: fixed("\t\n")},
	{Name: "long-64KiB", Value: fixed(strings.Repeat("a", 64<<10))},
	{Name: "padded", Value: func(c Ctx) string { return " " + c.Valid + " " }, MayBeValid: true},
	{Name: "newline-injection", Value: suffix("\nserver=6.6.6.6")},
	{Name: "cr-injection", Value: suffix("\rx")},
	{Name: "control-chars", Value: suffix("\x01\x7f")},
	{Name: "ansi-escape", Value: suffix("\x1b[2J")},
	{Name: "nul-like", Value: suffix("%00\\0")},
	{Name: "rtl-override", Value: func(c Ctx) string { return "\u202e" + c.Valid }},
	{Name: "zero-width", Value: suffix("\u200b")},
	{Name: "homoglyph", Value: func(c Ctx) string { return homoglyph(c.Valid) }},
	{Name: "shell-semicolon", Value: suffix("; rm -rf /")},
	{Name: "shell-subst", Value: fixed("$(id)")},
	{Name: "shell-backtick", Value: fixed("`id`")},
	{Name: "option-long", Value: fixed("--foo")},
	{Name: "option-dash", Value: fixed("-")},
	{Name: "qemu-comma", Value: suffix(",file=/etc/passwd")},
	{Name: "dnsmasq-hash", Value: suffix("#x")},
	{Name: "dnsmasq-comma", Value: suffix(",x")},
	{Name: "space-inside", Value: suffix(" x")},

	// Numbers.
	{Name: "negative", Kinds: numbers, Value: fixed("-1")},
	{Name: "zero", Kinds: numbers, Value: fixed("0")},
	{Name: "huge-2^64", Kinds: numbers, Value: fixed("18446744073709551616")},
	{Name: "uint32-max", Kinds: []Kind{KindID, KindCount}, Value: fixed("4294967295")},
	{Name: "float-1e309", Kinds: numbers, Value: fixed("1e309")},
	{Name: "float", Kinds: numbers, Value: fixed("1.5")},
	{Name: "hex", Kinds: numbers, Value: fixed("0x10")},
	{Name: "leading-zeros", Kinds: numbers, Value: func(c Ctx) string { return "00" + c.Valid }, MayBeValid: true},
	{Name: "plus-sign", Kinds: numbers, Value: func(c Ctx) string { return "+" + c.Valid }, MayBeValid: true},
	{Name: "nan", Kinds: numbers, Value: fixed("NaN")},
	{Name: "with-unit-s", Kinds: []Kind{KindID, KindCount}, Value: suffix("s")},
	{Name: "unit-decimal-G", Kinds: []Kind{KindSize}, Value: fixed("1G")},
	{Name: "unit-GB", Kinds: []Kind{KindSize}, Value: fixed("1GB")},
	{Name: "unit-lower-gi", Kinds: []Kind{KindSize}, Value: fixed("1gi")},
	{Name: "unit-space", Kinds: []Kind{KindSize}, Value: fixed("1 Gi")},
	{Name: "unit-fraction", Kinds: []Kind{KindSize}, Value: fixed("1.5Gi")},
	{Name: "unit-exbi", Kinds: []Kind{KindSize}, Value: fixed("16Ei")},

	// Addresses.
	{Name: "ipv6-loopback", Kinds: []Kind{KindIP}, Value: fixed("::1")},
	{Name: "ip-with-prefix", Kinds: []Kind{KindIP}, Value: suffix("/30")},
	{Name: "ip-octet-256", Kinds: []Kind{KindIP}, Value: fixed("192.168.254.256")},
	{Name: "ip-three-octets", Kinds: []Kind{KindIP}, Value: fixed("192.168.254")},
	{Name: "ip-octal", Kinds: []Kind{KindIP}, Value: fixed("0300.0250.0376.02")},
	{Name: "ip-integer", Kinds: []Kind{KindIP}, Value: fixed("3232300546")},
	{Name: "ip-unspecified", Kinds: []Kind{KindIP}, Value: fixed("0.0.0.0")},
	{Name: "ip-broadcast", Kinds: []Kind{KindIP}, Value: fixed("255.255.255.255")},
	{Name: "ip-multicast", Kinds: []Kind{KindIP}, Value: fixed("224.0.0.1")},
	{Name: "ip-link-local", Kinds: []Kind{KindIP}, Value: fixed("169.254.1.1")},
	{Name: "ip-zone", Kinds: []Kind{KindIP}, Value: fixed("fe80::1%eth0")},
	{Name: "ip-bracketed", Kinds: []Kind{KindIP}, Value: fixed("[::1]")},

	// Words.
	{Name: "bool-maybe", Kinds: []Kind{KindBool}, Value: fixed("maybe")},
	{Name: "bool-two", Kinds: []Kind{KindBool}, Value: fixed("2")},
	{Name: "enum-upper", Kinds: []Kind{KindEnum}, Value: func(c Ctx) string { return strings.ToUpper(c.Valid) }},
	{Name: "enum-prefix", Kinds: []Kind{KindEnum}, Value: func(c Ctx) string { return c.Valid[:len(c.Valid)/2] }},

	// Interface names.
	{Name: "ifname-16-bytes", Kinds: []Kind{KindIfName}, Value: fixed("abcdefghijklmnop")},
	{Name: "ifname-multibyte", Kinds: []Kind{KindIfName}, Value: fixed("ääääääää")},
	{Name: "ifname-lo", Kinds: []Kind{KindIfName}, Value: fixed("lo")},
	{Name: "ifname-eth0", Kinds: []Kind{KindIfName}, Value: fixed("eth0")},
	{Name: "ifname-slash", Kinds: []Kind{KindIfName}, Value: fixed("a/b")},
	{Name: "ifname-percent", Kinds: []Kind{KindIfName}, Value: fixed("br%d")},
	{Name: "ifname-dot", Kinds: []Kind{KindIfName}, Value: fixed(".")},
	{Name: "ifname-dotdot", Kinds: []Kind{KindIfName}, Value: fixed("..")},
	{Name: "ifname-colon", Kinds: []Kind{KindIfName}, Value: fixed("eth0:1")},
	{Name: "ifname-leading-dash", Kinds: []Kind{KindIfName}, Value: fixed("-br0")},
	{Name: "ifname-sysctl-all", Kinds: []Kind{KindIfName}, Value: fixed("all")},
	{Name: "ifname-sysctl-default", Kinds: []Kind{KindIfName}, Value: fixed("default")},

	// Bare names.
	{Name: "name-dotdot", Kinds: []Kind{KindName}, Value: fixed("..")},
	{Name: "name-slash", Kinds: []Kind{KindName}, Value: fixed("a/b")},
	{Name: "name-hidden", Kinds: []Kind{KindName}, Value: suffix(".x")},
	{Name: "name-upper", Kinds: []Kind{KindName}, Value: fixed("PET")},
	{Name: "name-64", Kinds: []Kind{KindName}, Value: fixed(strings.Repeat("p", 64))},
	{Name: "name-pet-disk", Kinds: []Kind{KindName}, Value: fixed("pet.qcow2")},
	{Name: "name-pet-record", Kinds: []Kind{KindName}, Value: fixed("pet.json")},
	{Name: "name-record-suffix", Kinds: []Kind{KindName}, Value: fixed("x.sha256")},

	// sha256.
	{Name: "hex-63", Kinds: []Kind{KindHex}, Value: fixed(strings.Repeat("a", 63))},
	{Name: "hex-65", Kinds: []Kind{KindHex}, Value: fixed(strings.Repeat("a", 65))},
	{Name: "hex-not-hex", Kinds: []Kind{KindHex}, Value: fixed(strings.Repeat("g", 64))},
	{Name: "hex-prefixed", Kinds: []Kind{KindHex}, Value: fixed("sha256:" + strings.Repeat("a", 64))},
	{Name: "hex-wrong", Kinds: []Kind{KindHex}, Value: fixed(strings.Repeat("0", 64))},

	// Paths: all under the sandbox.
	{Name: "path-relative", Kinds: paths, Value: fixed("relative/x")},
	{Name: "path-dotdot", Kinds: paths, Value: func(c Ctx) string { return c.Root + "/run/../outside" }},
	{Name: "path-trailing-slash", Kinds: paths, Value: func(c Ctx) string { return c.Valid + "/" }, MayBeValid: true},
	{Name: "path-proc-environ", Kinds: files, Value: fixed("/proc/self/environ")},
	{Name: "path-proc-cwd", Kinds: []Kind{KindDir}, Value: fixed("/proc/self/cwd")},
	{Name: "path-dev-zero", Kinds: []Kind{KindFile, KindSource}, Value: fixed("/dev/zero")},
	{Name: "path-fifo", Kinds: paths, Value: under(HFifo)},
	{Name: "path-dir-for-file", Kinds: files, Value: under(HDir)},
	{Name: "path-file-for-dir", Kinds: []Kind{KindDir}, Value: under(HFile)},
	{Name: "path-symlink-pet-disk", Kinds: paths, Value: under(HLinkPet)},
	{Name: "path-symlink-passwd", Kinds: paths, Value: under(HLinkPasswd)},
	{Name: "path-dangling-symlink", Kinds: paths, Value: under(HDangling)},
	{Name: "path-nonexistent", Kinds: paths, Value: under("hostile/nope/x")},
	{Name: "path-comma", Kinds: paths, Value: under(HComma)},
	{Name: "path-newline", Kinds: paths, Value: under(HNewline)},

	// URLs.
	{Name: "url-file", Kinds: []Kind{KindSource}, Value: fixed("file:///etc/passwd")},
	{Name: "url-ftp", Kinds: []Kind{KindSource}, Value: fixed("ftp://127.0.0.1:1/x.qcow2")},
	{Name: "url-javascript", Kinds: []Kind{KindSource}, Value: fixed("javascript:alert(1)")},
	{Name: "url-scheme-relative", Kinds: []Kind{KindSource}, Value: fixed("//127.0.0.1:1/x.qcow2")},
	{Name: "url-userinfo", Kinds: []Kind{KindSource}, Value: fixed("http://user:s3cr3tpw@127.0.0.1:1/x.qcow2"), Secret: "s3cr3tpw"},
	{Name: "url-query-secret", Kinds: []Kind{KindSource}, Value: fixed("http://127.0.0.1:1/x.qcow2?X-Amz-Signature=s3cr3tsig"), Secret: "s3cr3tsig"},
	{Name: "url-ipv6", Kinds: []Kind{KindSource}, Value: fixed("http://[::1]:1/x.qcow2")},
	{Name: "url-no-host", Kinds: []Kind{KindSource}, Value: fixed("http:///x.qcow2")},
	{Name: "url-bare-scheme", Kinds: []Kind{KindSource}, Value: fixed("http://")},
	{Name: "url-no-file", Kinds: []Kind{KindSource}, Value: fixed("http://127.0.0.1:1/")},
	{Name: "url-fragment", Kinds: []Kind{KindSource}, Value: fixed("http://127.0.0.1:1/x.qcow2#frag")},
	{Name: "url-upper-scheme", Kinds: []Kind{KindSource}, Value: fixed("HTTP://127.0.0.1:1/x.qcow2"), MayBeValid: true},
}

// homoglyph swaps latin letters for Cyrillic look-alikes.
func homoglyph(s string) string {
	r := strings.NewReplacer("a", "а", "e", "е", "o", "о", "p", "р", "c", "с", "x", "х")
	if out := r.Replace(s); out != s {
		return out
	}
	return "а" + s
}

// For returns the classes that apply to kind k, except those Skip names for v.
func For(v string, k Kind) []Class {
	var out []Class
	for _, c := range Classes {
		if c.Applies(k) && Skip(v, c.Name) == "" {
			out = append(out, c)
		}
	}
	return out
}
