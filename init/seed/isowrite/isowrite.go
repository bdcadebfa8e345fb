// Package isowrite writes small ISO 9660 images with Rock Ridge names, byte for
// byte deterministic: the same label and files always give the same image.
//
// It exists because github.com/kdomanski/iso9660's writer stamps time.Now into
// the volume descriptor, writes no path tables and no Rock Ridge, and mangles
// names ("meta-data" becomes "meta_data"): cloud-init's NoCloud reader could not
// find its files, and a re-run would never be a no-op. That library's reader is
// still used by the tests to read images back.
//
// What is written: 16 zero sectors, the primary volume descriptor, the Joliet
// supplementary volume descriptor, the terminator, the L and M path tables of
// both trees, the directories of both trees (breadth first, children sorted by
// identifier), then the file data (shared by both trees), each extent
// sector-aligned, then 150 zero sectors of padding.
//
// The primary tree carries Rock Ridge: every directory record has PX (mode
// r-x/r--, uid 0) and NM (the real name); the root's "." record carries SUSP SP
// and the RRIP_1991A ER record, which is what makes Linux (fs/isofs) use the
// names (Linux prefers Rock Ridge when both are there). The Joliet tree holds
// the same names in UCS-2 for readers without Rock Ridge (Windows).
package isowrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical block size of the image.
const SectorSize = 2048

// MaxNameLen is the longest path component accepted (Rock Ridge NM must fit a
// directory record of at most 255 bytes together with the ISO name).
const MaxNameLen = 120

// File is one regular file of the image. Directories are implied by paths.
type File struct {
	Path string // slash-separated, relative, e.g. "openstack/latest/user_data"
	Data []byte
}

// padSectors of zeros end the image, inside the volume, as genisoimage's
// default -pad writes them (cloud-localds' images have them): readers that
// read ahead past the last extent still read the volume.
const padSectors = 150

// recordDate is the fixed recording date of every directory record:
// 2000-01-01 00:00:00 UTC (ECMA-119 9.1.5, years since 1900).
var recordDate = [7]byte{100, 1, 1, 0, 0, 0, 0}

// volumeDate is the fixed creation/modification/effective date (ECMA-119 8.4.26.1).
const volumeDate = "2000010100000000"

type node struct {
	name     string // Rock Ridge (real) name
	dir      bool
	data     []byte
	children []*node
	parent   *node

	// per tree (primary with Rock Ridge, Joliet): identifier, sorted
	// children, and for directories extent, size and path table number
	id     [2][]byte
	kids   [2][]*node
	extent [2]uint32 // first sector; files: the same in both trees
	size   [2]uint32 // bytes (directories: whole sectors)
	dirNum [2]int    // path table number (directories), 1-based
}

// The two directory trees of an image.
const (
	primary = 0
	joliet  = 1
)

// Write writes an image with the volume label and files to w. The label is
// written as given (cloud-init looks for "config-2" and "cidata" verbatim); it
// must be 1 to 32 printable ASCII characters.
func Write(w io.Writer, label string, files []File) error {
	img, err := Build(label, files)
	if err != nil {
		return err
	}
	_, err = w.Write(img)
	return err
}

// Build returns the image bytes.
func Build(label string, files []File) ([]byte, error) {
	if err := checkLabel(label); err != nil {
		return nil, err
	}
	root := &node{dir: true}
	root.parent = root
	for _, f := range files {
		if err := add(root, f); err != nil {
			return nil, err
		}
	}
	assignIDs(root)
	var dirs [2][]*node
	var ptSize [2]uint32
	for t := primary; t <= joliet; t++ {
		dirs[t] = breadthFirst(root, t)
		ptSize[t] = uint32(len(pathTable(dirs[t], t, binary.LittleEndian))) // sizes only at this point
	}

	// Layout: 16 system sectors, PVD, SVD, terminator, path tables, dirs, files.
	next := uint32(19)
	var lTable, mTable [2]uint32
	for t := primary; t <= joliet; t++ {
		lTable[t] = next
		next += sectors(ptSize[t])
		mTable[t] = next
		next += sectors(ptSize[t])
	}
	for t := primary; t <= joliet; t++ {
		for _, d := range dirs[t] {
			d.size[t] = uint32(len(dirExtent(d, t))) // record sizes do not depend on extents
			d.extent[t] = next
			next += d.size[t] / SectorSize
		}
	}
	var fileNodes []*node
	for _, d := range dirs[primary] {
		for _, c := range d.kids[primary] {
			if c.dir {
				continue
			}
			if len(c.data) > 0xFFFFFFFF-SectorSize {
				return nil, fmt.Errorf("iso9660: %s: file too large", c.name)
			}
			c.size[primary] = uint32(len(c.data))
			c.size[joliet] = c.size[primary]
			if len(c.data) == 0 {
				continue // extent 0
			}
			c.extent[primary] = next
			c.extent[joliet] = next
			next += sectors(c.size[primary])
			fileNodes = append(fileNodes, c)
		}
	}
	total := next + padSectors

	img := make([]byte, int(total)*SectorSize)
	copy(img[16*SectorSize:], volumeDescriptor(primary, label, total, ptSize[primary], lTable[primary], mTable[primary], root))
	copy(img[17*SectorSize:], volumeDescriptor(joliet, label, total, ptSize[joliet], lTable[joliet], mTable[joliet], root))
	copy(img[18*SectorSize:], terminator())
	for t := primary; t <= joliet; t++ {
		copy(img[int(lTable[t])*SectorSize:], pathTable(dirs[t], t, binary.LittleEndian))
		copy(img[int(mTable[t])*SectorSize:], pathTable(dirs[t], t, binary.BigEndian))
		for _, d := range dirs[t] {
			copy(img[int(d.extent[t])*SectorSize:], dirExtent(d, t))
		}
	}
	for _, f := range fileNodes {
		copy(img[int(f.extent[primary])*SectorSize:], f.data)
	}
	return img, nil
}

func checkLabel(label string) error {
	if label == "" || len(label) > 32 {
		return fmt.Errorf("iso9660: volume label %q: must be 1 to 32 characters", label)
	}
	for _, c := range []byte(label) {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("iso9660: volume label %q: must be printable ASCII", label)
		}
	}
	return nil
}

func add(root *node, f File) error {
	parts := strings.Split(f.Path, "/")
	cur := root
	for i, p := range parts {
		if p == "" || p == "." || p == ".." || len(p) > MaxNameLen || strings.ContainsRune(p, 0) {
			return fmt.Errorf("iso9660: path %q: bad component %q", f.Path, p)
		}
		last := i == len(parts)-1
		var found *node
		for _, c := range cur.children {
			if c.name == p {
				found = c
			}
		}
		if found != nil {
			if last || !found.dir {
				return fmt.Errorf("iso9660: path %q: already exists", f.Path)
			}
			cur = found
			continue
		}
		n := &node{name: p, dir: !last, parent: cur}
		if last {
			n.data = f.Data
		}
		cur.children = append(cur.children, n)
		cur = n
	}
	return nil
}

// isoName maps a name to ISO 9660 d-characters (A-Z, 0-9, _): directories up
// to 31 characters, files NAME.EXT;1 within 30 characters plus ";1". Names
// that clash get a number n > 0 at the end of the base name. Readers that
// know Rock Ridge (Linux, isoinfo -R, xorriso) show the real name instead.
func isoName(name string, dir bool, n int) []byte {
	clean := func(s string, max int) string {
		var b strings.Builder
		for i := 0; i < len(s) && b.Len() < max; i++ {
			c := s[i]
			switch {
			case c >= 'a' && c <= 'z':
				b.WriteByte(c - 'a' + 'A')
			case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
				b.WriteByte(c)
			default:
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	suffix := ""
	if n > 0 {
		suffix = "_" + strconv.Itoa(n)
	}
	if dir {
		return []byte(clean(name, 31-len(suffix)) + suffix)
	}
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	ext = clean(ext, 8)
	base = clean(base, 30-1-len(ext)-len(suffix)) + suffix
	return []byte(base + "." + ext + ";1")
}

// assignIDs gives every node its identifier in both trees, unique among its
// siblings, and sorts the children of each tree by identifier.
func assignIDs(d *node) {
	// by real name first, so that the disambiguation below does not depend
	// on the order files were given in
	sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
	for t, name := range [2]func(string, bool, int) []byte{isoName, jolietName} {
		seen := map[string]bool{}
		for _, c := range d.children {
			c.id[t] = name(c.name, c.dir, 0)
			for n := 1; seen[string(c.id[t])]; n++ {
				c.id[t] = name(c.name, c.dir, n)
			}
			seen[string(c.id[t])] = true
		}
		kids := append([]*node(nil), d.children...)
		sort.Slice(kids, func(i, j int) bool { return bytes.Compare(kids[i].id[t], kids[j].id[t]) < 0 })
		d.kids[t] = kids
	}
	for _, c := range d.children {
		if c.dir {
			assignIDs(c)
		}
	}
}

// jolietName is name in UCS-2 big endian (Joliet, level 3): at most 64
// characters, the characters Joliet forbids (controls, * / : ; ? \) as '_',
// no version (";1"), as genisoimage writes them. Clashing names get a number
// n > 0 at the end.
func jolietName(name string, _ bool, n int) []byte {
	var u []uint16
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune("*/:;?\\", r) {
			r = '_'
		}
		u = append(u, utf16.Encode([]rune{r})...)
	}
	suffix := ""
	if n > 0 {
		suffix = "_" + strconv.Itoa(n)
	}
	if max := 64 - len(suffix); len(u) > max {
		u = u[:max]
		if utf16.IsSurrogate(rune(u[max-1])) && u[max-1] < 0xDC00 {
			u = u[:max-1] // do not split a surrogate pair
		}
	}
	for _, r := range suffix {
		u = append(u, uint16(r))
	}
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// breadthFirst lists the directories of tree t in path table order (level,
// parent, identifier) and numbers them.
func breadthFirst(root *node, t int) []*node {
	out := []*node{root}
	for i := 0; i < len(out); i++ {
		out[i].dirNum[t] = i + 1
		for _, c := range out[i].kids[t] {
			if c.dir {
				out = append(out, c)
			}
		}
	}
	return out
}

func sectors(n uint32) uint32 { return (n + SectorSize - 1) / SectorSize }

func pathTable(dirs []*node, t int, order binary.ByteOrder) []byte {
	var b []byte
	for _, d := range dirs {
		id := d.id[t]
		if d.parent == d {
			id = []byte{0}
		}
		rec := make([]byte, 8, 8+len(id)+1)
		rec[0] = byte(len(id))
		order.PutUint32(rec[2:], d.extent[t])
		order.PutUint16(rec[6:], uint16(d.parent.dirNum[t]))
		rec = append(rec, id...)
		if len(id)%2 == 1 {
			rec = append(rec, 0)
		}
		b = append(b, rec...)
	}
	return b
}

// Rock Ridge / SUSP system use entries.
func suspSP() []byte { return []byte{'S', 'P', 7, 1, 0xBE, 0xEF, 0} }

func suspRR(flags byte) []byte { return []byte{'R', 'R', 5, 1, flags} }

const (
	rrPX = 0x01
	rrNM = 0x08
)

func suspPX(mode uint32, links uint32) []byte {
	b := []byte{'P', 'X', 36, 1}
	for _, v := range []uint32{mode, links, 0, 0} { // mode, links, uid, gid
		b = append(b, both32(v)...)
	}
	return b
}

func suspNM(name string) []byte {
	return append([]byte{'N', 'M', byte(5 + len(name)), 1, 0}, name...)
}

const (
	erID  = "RRIP_1991A"
	erDes = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	erSrc = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE."
)

func suspER() []byte {
	b := []byte{'E', 'R', byte(8 + len(erID) + len(erDes) + len(erSrc)), 1, byte(len(erID)), byte(len(erDes)), byte(len(erSrc)), 1}
	b = append(b, erID...)
	b = append(b, erDes...)
	return append(b, erSrc...)
}

const (
	modeDir  = 0o040555
	modeFile = 0o100444
)

func links(n *node) uint32 {
	if !n.dir {
		return 1
	}
	l := uint32(2)
	for _, c := range n.children {
		if c.dir {
			l++
		}
	}
	return l
}

func mode(n *node) uint32 {
	if n.dir {
		return modeDir
	}
	return modeFile
}

// records returns the directory records of d in tree t: ".", "..", then the
// children. Only the primary tree carries Rock Ridge.
func records(d *node, t int) [][]byte {
	if t == joliet {
		recs := [][]byte{dirRecord([]byte{0}, d, t, nil), dirRecord([]byte{1}, d.parent, t, nil)}
		for _, c := range d.kids[t] {
			recs = append(recs, dirRecord(c.id[t], c, t, nil))
		}
		return recs
	}
	self := []byte{}
	if d.parent == d {
		self = append(self, suspSP()...)
	}
	self = append(self, suspRR(rrPX)...)
	self = append(self, suspPX(mode(d), links(d))...)
	if d.parent == d {
		self = append(self, suspER()...)
	}
	recs := [][]byte{
		dirRecord([]byte{0}, d, t, self),
		dirRecord([]byte{1}, d.parent, t, append(suspRR(rrPX), suspPX(mode(d.parent), links(d.parent))...)),
	}
	for _, c := range d.kids[t] {
		su := append(suspRR(rrPX|rrNM), suspPX(mode(c), links(c))...)
		su = append(su, suspNM(c.name)...)
		recs = append(recs, dirRecord(c.id[t], c, t, su))
	}
	return recs
}

// dirRecord builds one directory record (ECMA-119 9.1) of tree t. For "."
// and "..", n is the directory the record points at.
func dirRecord(id []byte, n *node, t int, su []byte) []byte {
	l := 33 + len(id)
	if len(id)%2 == 0 {
		l++ // padding byte after an even-length identifier
	}
	l += len(su)
	if l%2 == 1 {
		su = append(su, 0)
		l++
	}
	if l > 255 {
		panic(fmt.Sprintf("iso9660: directory record for %q is %d bytes", id, l)) // MaxNameLen prevents it
	}
	b := make([]byte, 33, l)
	b[0] = byte(l)
	copy(b[2:], both32(n.extent[t]))
	copy(b[10:], both32(n.size[t]))
	copy(b[18:], recordDate[:])
	if n.dir {
		b[25] = 0x02
	}
	copy(b[28:], both16(1))
	b[32] = byte(len(id))
	b = append(b, id...)
	if len(id)%2 == 0 {
		b = append(b, 0)
	}
	return append(b, su...)
}

// dirExtent lays the records out in sectors: a record never crosses a sector.
func dirExtent(d *node, t int) []byte {
	var b []byte
	for _, r := range records(d, t) {
		if room := SectorSize - len(b)%SectorSize; room < len(r) {
			b = append(b, make([]byte, room)...)
		}
		b = append(b, r...)
	}
	if rest := len(b) % SectorSize; rest != 0 {
		b = append(b, make([]byte, SectorSize-rest)...)
	}
	return b
}

func both16(v uint16) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

func both32(v uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
	return b
}

func padded(s string, n int) []byte {
	b := bytes.Repeat([]byte{' '}, n)
	copy(b, s)
	return b
}

// volumeDescriptor is the primary volume descriptor (t == primary) or the
// Joliet supplementary one (ECMA-119 8.4 and 8.5; Joliet: UCS-2 big endian
// identifiers and the escape sequence "%/E", level 3).
func volumeDescriptor(t int, label string, total, ptSize, lTable, mTable uint32, root *node) []byte {
	text := func(s string, n int) []byte { return padded(s, n) }
	b := make([]byte, SectorSize)
	b[0] = 1
	if t == joliet {
		b[0] = 2
		text = ucs2Padded
		copy(b[88:], "%/E")
	}
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[8:], text("LINUX", 32))
	copy(b[40:], text(label, 32))
	copy(b[80:], both32(total))
	copy(b[120:], both16(1))
	copy(b[124:], both16(1))
	copy(b[128:], both16(SectorSize))
	copy(b[132:], both32(ptSize))
	binary.LittleEndian.PutUint32(b[140:], lTable)
	binary.BigEndian.PutUint32(b[148:], mTable)
	copy(b[156:], dirRecord([]byte{0}, root, t, nil)) // 34 bytes, no system use (SUSP 5.3)
	copy(b[190:], text("", 128))                      // volume set
	copy(b[318:], text("", 128))                      // publisher
	copy(b[446:], text("", 128))                      // data preparer
	copy(b[574:], text("BERTH SEED-ISO", 128))        // application
	copy(b[702:], text("", 36))                       // copyright, abstract, bibliographic
	copy(b[739:], text("", 36))
	copy(b[776:], text("", 36))
	if t == primary {
		b[738], b[775], b[812] = ' ', ' ', ' '
	}
	date := append([]byte(volumeDate), 0)
	copy(b[813:], date)                                  // creation
	copy(b[830:], date)                                  // modification
	copy(b[847:], append([]byte("0000000000000000"), 0)) // expiration: none
	copy(b[864:], date)                                  // effective
	b[881] = 1
	return b
}

// ucs2Padded is s in UCS-2 big endian, padded with UCS-2 spaces to n bytes.
func ucs2Padded(s string, n int) []byte {
	b := make([]byte, 0, n)
	for _, r := range s {
		if len(b)+2 > n {
			break
		}
		b = binary.BigEndian.AppendUint16(b, uint16(r))
	}
	for len(b)+2 <= n {
		b = append(b, 0, ' ')
	}
	return b
}

func terminator() []byte {
	b := make([]byte, SectorSize)
	b[0] = 255
	copy(b[1:], "CD001")
	b[6] = 1
	return b
}

// ErrNotISO is returned by Label for data that is not an ISO 9660 image.
var ErrNotISO = errors.New("not an ISO 9660 image")

// Label returns the volume label of an image (trailing spaces removed).
func Label(img []byte) (string, error) {
	if len(img) < 17*SectorSize || string(img[16*SectorSize+1:16*SectorSize+6]) != "CD001" {
		return "", ErrNotISO
	}
	return strings.TrimRight(string(img[16*SectorSize+40:16*SectorSize+72]), " "), nil
}
