package guest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
)

// PatternSHA256 is the sha256 of what `yes LINE | head -c n` writes: the
// tests write known data in the guest without sending it there, and check
// it against this.
func PatternSHA256(line string, n int64) string {
	unit := []byte(line + "\n")
	buf := bytes.Repeat(unit, 4096) // a whole number of lines: every write starts on a line
	h := sha256.New()
	for n > 0 {
		k := min(n, int64(len(buf)))
		h.Write(buf[:k])
		n -= k
	}
	return hex.EncodeToString(h.Sum(nil))
}
