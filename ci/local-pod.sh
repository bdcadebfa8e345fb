#!/usr/bin/env bash
# The whole Berth pod without Kubernetes, left running for a person or a bench (docs/local-pod.md).
# The Go package e2e/localpod does the work (its command e2e/localpod/cmd/local-pod); its test is
# `make test-local`.
#
#   ci/local-pod.sh up [STATE]            bring the pod up, wait for SSH, print the SSH command (make demo-local)
#   ci/local-pod.sh warm-restart [STATE]  stop vmm and run the pod's start again on the same disk (ci/bench/boot.sh)
#   ci/local-pod.sh down [STATE]          stop what `up` left running and remove it
#
# STATE (default /run/berth-local-pod.state) is a file of KEY='value' lines to source: WORK, NODE_NS,
# POD_NS, POD_IP, KEY, VMM_PID, DNSMASQ_PID, CONSOLE, BOOT_TO_SSH_S, ...
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH BERTH_REPO=$REPO
case ${1:-} in
up | warm-restart | down)
  # Built, then run (not go run, which turns every failure into exit 1): its exit code is the command's.
  (cd "$REPO/e2e" && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$REPO/out/local-pod" ./localpod/cmd/local-pod)
  exec "$REPO/out/local-pod" "$@"
  ;;
*)
  echo "usage: $0 up|warm-restart|down [STATE]" >&2
  exit 2
  ;;
esac
