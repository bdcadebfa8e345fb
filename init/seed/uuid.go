package seed

import (
	"crypto/sha1"
	"fmt"
)

// namespaceURL is RFC 9562's name space ID for URLs.
var namespaceURL = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// InstanceID derives the instance id of a VM from its name: UUIDv5 of the URL
// "berth:vm/<name>" (RFC 9562), the same on every pod restart, different for
// every name.
func InstanceID(vmName string) string {
	return uuid5(namespaceURL, "berth:vm/"+vmName)
}

func uuid5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
