# shellcheck shell=bash
# Sourced by build.sh, build-uefi.sh and build-installer.sh: the test guests' cache, with their log and die.
# cache_take DIR OUT TAG (the entry's directory, the image in it, a name for messages) prints OUT and
# exits 0 when the image is cached; else it holds flock on DIR/.lock (fd 9) for the rest of the
# script (a concurrent build waits at most TESTGUEST_LOCK_WAIT seconds, default 1800, then reuses
# the image that build made) and returns: the caller builds in a mktemp dir under $dir (cache_work)
# and renames the image into place, so a reader never sees a partial one.

cache_take() {
  local dir=$1 out=$2 tag=$3
  mkdir -p "$dir"
  if [[ -f $out ]]; then
    log "cached: $out"
    echo "$out"
    exit 0
  fi
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    log "another build of $tag is running; waiting for it (at most ${TESTGUEST_LOCK_WAIT:-1800} s)"
    flock -w "${TESTGUEST_LOCK_WAIT:-1800}" 9 || die "timed out waiting for the lock $dir/.lock"
  fi
  if [[ -f $out ]]; then # built by the run that held the lock
    log "cached: $out"
    echo "$out"
    exit 0
  fi
}

# cache_work DIR makes the build's work directory under DIR (the cache entry) and sets $work to it;
# a trap removes it on any exit, and INT or TERM exits 130.
cache_work() {
  work=$(mktemp -d "$1/.build.XXXXXX")
  trap 'set +e; rm -rf "$work"' EXIT
  trap 'exit 130' INT TERM
}
