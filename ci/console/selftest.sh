#!/usr/bin/env bash
# ci/console/selftest.sh: web-console.mjs must be able to fail. Without Kubernetes, in a network
# namespace of its own: QEMU (the host's qemu-system-x86_64, VGA, VNC on 127.0.0.1:5900) and the
# novnc image (ghcr.io/berth-vm/novnc:0.1.0, `make images`) as the chart runs it (read-only, no
# capabilities), then web-console.mjs through http://localhost:6080/vnc.html against:
#   1. a paused QEMU (-S): the VNC screen is QEMU's "Guest has not initialized the display (yet)."
#      text: connected, not blank, but typing draws nothing -> web-console.mjs must FAIL;
#   2. the test guest (ci/testguest/build.sh, cached) booted to its tty1 login prompt -> must PASS.
# About a minute (one TCG boot). Screenshots in out/console/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
IMAGE=${NOVNC_IMAGE:-ghcr.io/berth-vm/novnc:0.1.0}
OUT=$repo/out/console
mkdir -p "$OUT"
ns=berth-console-$RANDOM$RANDOM
qemu_pid="" ctr=berth-console-$RANDOM$RANDOM
log() { printf 'console selftest: %s\n' "$*" >&2; }
stop_qemu() { [ -z "$qemu_pid" ] || { kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=""; }; }
cleanup() {
	stop_qemu
	podman rm -f -t 1 "$ctr" >/dev/null 2>&1 || true
	ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

podman image exists "$IMAGE" || { log "FAIL: $IMAGE not built (make images)"; exit 1; }
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
guest=$("$repo/ci/testguest/build.sh" | tail -1)
ip netns add "$ns"
ip -n "$ns" link set lo up
# runc here cannot raise rlimits: low ones, as ci/images/test.sh
podman run -d --name "$ctr" --network "ns:/run/netns/$ns" --read-only --cap-drop ALL \
	--ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "$IMAGE" >/dev/null

# websockify in the container listens on 6080 a moment after `podman run -d` returns (seconds on a
# cold machine): the checks below start once it accepts a connection.
listening=0
for _ in $(seq 1 120); do
	if ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6080' 2>/dev/null; then
		listening=1
		break
	fi
	sleep 0.5
done
if ((listening == 0)); then
	log "FAIL: the novnc container does not listen on 127.0.0.1:6080 within 60 s; its log:"
	podman logs "$ctr" >&2 || true
	exit 1
fi

qemu() { # qemu ARGS...: QEMU in the namespace, VGA and VNC as vmm gives them
	ip netns exec "$ns" qemu-system-x86_64 -machine q35 -accel tcg -device VGA -vnc 127.0.0.1:0 \
		-nic none -display none "$@" >"$OUT/qemu.log" 2>&1 &
	qemu_pid=$!
}
web() { ip netns exec "$ns" timeout 150 node "$here/web-console.mjs" http://localhost:6080/vnc.html "$@"; }

fails=0
qemu -m 128 -S
if SCREEN_TIMEOUT_MS=5000 web "$OUT/paused.png" >"$OUT/paused.log" 2>&1; then
	log "FAIL: web-console.mjs passed against a paused QEMU (nothing running on the screen):"
	cat "$OUT/paused.log" >&2
	fails=$((fails + 1))
elif grep -q 'did not appear on the VM' "$OUT/paused.log"; then
	log "ok: a paused QEMU fails the typing check ($(grep -o 'canvas .*' "$OUT/paused.log" | head -1))"
else
	log "FAIL: against a paused QEMU, web-console.mjs failed for another reason:"
	cat "$OUT/paused.log" >&2
	fails=$((fails + 1))
fi
stop_qemu

qemu -m 1024 -smp 2 -drive "file=$guest,if=virtio,snapshot=on" -serial "file:$OUT/serial.log"
for _ in $(seq 1 120); do
	grep -q 'login:' "$OUT/serial.log" 2>/dev/null && break
	sleep 1
done
grep -q 'login:' "$OUT/serial.log" || { log "FAIL: the test guest showed no login prompt within 120 s"; exit 1; }
sleep 2 # getty on tty1 starts beside the serial one
if web "$OUT/guest.png" >"$OUT/guest.log" 2>&1; then
	log "ok: the test guest passes ($(grep -o 'typed .*' "$OUT/guest.log"))"
else
	log "FAIL: web-console.mjs against the test guest:"
	cat "$OUT/guest.log" >&2
	fails=$((fails + 1))
fi
((fails == 0)) || exit 1
log "2 passed, 0 failed"
