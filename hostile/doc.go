// Package hostile is the hostile-input sweep over the real stage binaries
// (docs/security.md, "Hostile input"): every variable each binary lists in its
// -h, every applicable class of hostile value (classes.go), every file of the
// shared volumes replaced by a symlink, FIFO, directory or foreign file, and
// every kind of link named by TAP, BRIDGE and POD_IFACE. The binaries run from
// bin/ (make build) in temp dirs and fresh network namespaces, as root.
//
// What a variable is (and so which classes apply to it), which other variable
// a message may name instead, and the few declared exceptions live in one
// place: kinds.go. A variable that is not in it gets every string class.
package hostile
