#!/bin/sh
# collect.sh DEST PATH...: copy each PATH (a file, a symlink or a directory) into DEST under the
# same path, following symlinks one hop at a time so every link in a chain exists in DEST, then add
# every shared library the ELF files in DEST need (ldd, which gives the whole closure), so that a
# FROM scratch image holding DEST runs them. DEST mirrors Debian's merged /usr (/lib -> usr/lib).
# Runs in the Debian build stage of the Containerfiles, never on the build host.
set -eu
dest=$1
shift
mkdir -p "$dest/usr/bin" "$dest/usr/sbin" "$dest/usr/lib" "$dest/usr/lib64" "$dest/etc" "$dest/tmp"
chmod 1777 "$dest/tmp"
for d in bin sbin lib lib64; do [ -e "$dest/$d" ] || ln -s "usr/$d" "$dest/$d"; done

copy() {
	p=$1
	if [ -e "$dest$p" ] || [ -L "$dest$p" ]; then return 0; fi
	if [ ! -e "$p" ] && [ ! -L "$p" ]; then
		echo "collect.sh: $p does not exist" >&2
		exit 1
	fi
	# the directory part may itself hold symlinks (/lib -> usr/lib): copy it resolved
	dir=$(cd "$(dirname "$p")" && pwd -P)
	mkdir -p "$dest$dir"
	p="$dir/$(basename "$p")"
	if [ -e "$dest$p" ] || [ -L "$dest$p" ]; then return 0; fi
	if [ -d "$p" ] && [ ! -L "$p" ]; then
		mkdir -p "$dest$p"
		for f in "$p"/* "$p"/.[!.]*; do
			if [ -e "$f" ] || [ -L "$f" ]; then copy "$f"; fi
		done
		return 0
	fi
	cp -a "$p" "$dest$p"
	if [ -L "$p" ]; then
		t=$(readlink "$p")
		case $t in /*) ;; *) t="$dir/$t" ;; esac
		copy "$t"
	fi
}

for p in "$@"; do copy "$p"; done

# Libraries: repeat until nothing new (a library's own needs are in ldd's closure, but a copied
# symlink can bring a new file).
while :; do
	before=$(find "$dest" | wc -l)
	find "$dest" -type f | while read -r f; do
		case $(head -c 4 "$f" | od -An -c | tr -d ' ') in
		177ELF) ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true ;;
		esac
	done | sort -u | while read -r lib; do copy "$lib"; done
	[ "$(find "$dest" | wc -l)" = "$before" ] && break
done
