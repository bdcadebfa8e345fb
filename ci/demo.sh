#!/usr/bin/env bash
# `make demo` until the cluster exists: boot the test guest through Berth's own stages, in network
# namespaces shaped like a Calico pod (ci/local-pod.sh up), print the SSH command that works from the
# node netns and leave the VM running.
#
#   ci/demo.sh          boot it (or, while some stage binary is still missing, run the stages that
#                       exist in a throwaway netns, show what each one did, and remove everything)
#   ci/demo.sh down     stop the VM and remove every namespace, process and file the demo made
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck source=ci/local-pod.sh
source "$REPO/ci/local-pod.sh"

# Run the stages that exist, one after the other, in a throwaway Calico-shaped pod netns; show what
# each did; tear everything down.
partial() {
  local b missing=()
  for b in net-setup image-fetch seed-iso vmm; do [[ -x $BIN/$b ]] || missing+=("$b"); done
  log "not built yet: ${missing[*]}; running the stages that exist in a throwaway netns"
  GUEST_IMAGE=$("$REPO/ci/testguest/build.sh" | tail -1)
  new_state
  trap teardown EXIT
  trap 'exit 130' INT TERM
  make_netns
  make_pod_files
  start_http
  if [[ -x $BIN/net-setup ]]; then
    stage_net_setup
    echo "== net-setup: the pod netns now has"
    in_pod ip -br addr
    in_pod ip -d link show tap0 2>/dev/null | head -3 || true
    echo "-- its NAT rules"
    { in_pod iptables-save -t nat 2>/dev/null; in_pod nft list ruleset 2>/dev/null; } | grep -iv '^#' | head -40
    echo "-- $RUN_DIR/dnsmasq.conf"
    cat "$RUN_DIR/dnsmasq.conf" 2>/dev/null || true
  fi
  if [[ -x $BIN/image-fetch ]]; then
    stage_image_fetch
    echo "== image-fetch: downloaded into $IMAGE_DIR and made the pet overlay"
    ls -l "$IMAGE_DIR" "$DISK_DIR"
    qemu-img info "$DISK_DIR/$VM_NAME.qcow2" 2>/dev/null | head -8 || true
  fi
  if [[ -x $BIN/seed-iso ]]; then
    stage_seed_iso
    echo "== seed-iso: $RUN_DIR/seed.iso holds"
    isoinfo -R -f -i "$RUN_DIR/seed.iso" 2>/dev/null || ls -l "$RUN_DIR"
  fi
  echo "== stage logs"
  tail -n 5 "$WORK"/*.log 2>/dev/null || true
  log "removed everything again; once every stage is built, 'make demo' boots the VM and leaves it running"
}

case ${1:-up} in
up)
  if [[ -x $BIN/net-setup && -x $BIN/image-fetch && -x $BIN/seed-iso && -x $BIN/vmm ]]; then
    cmd_up
  else
    partial
  fi
  ;;
down) cmd_down ;;
*)
  echo "usage: $0 [up|down]" >&2
  exit 2
  ;;
esac
