#!/usr/bin/env bash
# Bench "stages": each Berth stage binary's wall time and peak RSS with warm caches, as the pod runs
# it (ci/local-pod.sh's environment), against the goals themselves (there is no other baseline):
#   all stages together (net-setup + image-fetch + seed-iso + vmm --dry-run) / 300 ms   goal < 1
#   peak RSS of each Go stage / 20 MiB                                                  goal < 1
# BENCH_RUNS (11) runs after one untimed warm-up. Every command is bounded (timeout 60 s).
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init stages
bench_machine init vmm netsetup common
RUNS=${BENCH_RUNS:-11}
# The timed stages run at this nice level (children inherit it), so the other jobs of a shared
# machine delay them less; 0 turns it off. CPU time does not depend on it.
NICE=${BENCH_NICE:--10}
HTTP_PORT=8090
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
[[ -x /usr/bin/time ]] || fail "/usr/bin/time missing (ci/install-deps.sh: time)"
command -v qemu-img >/dev/null || fail "qemu-img missing"
for b in net-setup image-fetch seed-iso vmm; do bench_bin "$b" >/dev/null; done
BIN=$BENCH_REPO/bin
AS_VM=(setpriv --reuid=65534 --regid=65534 --clear-groups)
ENV0=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME=bench)

# The image server: python3 -m http.server on the node's address in a node netns; image-fetch runs in
# that node's pod netns (it reaches the node through the Calico-shaped path, as in a real pod).
pod_netns
pod_files
SRV_NODE=$NODE_NS SRV_POD=$POD_NS
mkdir -p "$WORK/www" "$WORK/images"
qemu-img create -q -f qcow2 "$WORK/www/base.qcow2" 1G
chown 65534:65534 "$WORK/images"
ip netns exec "$SRV_NODE" setsid python3 -m http.server --bind "$NODE_IP" --directory "$WORK/www" "$HTTP_PORT" \
  >"$WORK/http.log" 2>&1 </dev/null &
BENCH_PIDS+=($!)
wait_tcp "$SRV_POD" "$NODE_IP" "$HTTP_PORT" 15

# Typical user-data: a user with a key, packages, files, commands.
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id" -C berth-bench
cat >"$WORK/config/user-data" <<EOF
#cloud-config
hostname: bench
users:
  - name: debian
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    ssh_authorized_keys:
      - $(cat "$WORK/id.pub")
package_update: true
packages: [qemu-guest-agent, curl, htop]
write_files:
  - path: /etc/motd
    content: |
      Berth VM
  - path: /etc/sysctl.d/90-bench.conf
    content: "vm.swappiness = 10\n"
runcmd:
  - [ systemctl, enable, --now, qemu-guest-agent ]
  - [ sh, -c, 'echo ok > /var/lib/bench-marker' ]
EOF
printf 'local-hostname: bench\n' >"$WORK/config/meta-data"

# timed NAME NS CMD...: run CMD in NS under /usr/bin/time (peak RSS = the child's ru_maxrss), from a
# small python3 wrapper inside the netns that reads the monotonic clock around it and the CPU time
# (user + sys, µs, the stage and the children it waited for) from wait4 (ip netns exec's and the
# wrapper's own start-up are not counted). Appends to NAME_ms, NAME_rss (KiB) and NAME_cpu (ms).
cat >"$WORK/timed.py" <<'PY'
import os, sys, time
out, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execv("/usr/bin/time", ["/usr/bin/time", "-f", "%M", "-o", out] + cmd)
_, status, ru = os.wait4(pid, 0)
wall = time.monotonic() - t0
if status != 0:
    print("FAILED", status)
    sys.exit(1)
rss = open(out).read().split()[-1]
print("%.1f %s %.1f" % (wall * 1000, rss, (ru.ru_utime + ru.ru_stime) * 1000))
PY
timed() {
  local name=$1 ns=$2 out
  shift 2
  out=$(ip netns exec "$ns" timeout 60 nice -n "$NICE" python3 "$WORK/timed.py" "$WORK/time-$name" "$WORK/time-$name.log" "$@") || {
    tail -20 "$WORK/time-$name.log" >&2
    fail "$name failed: $out"
  }
  read -r ms rss cpu <<<"$out"
  eval "${name}_ms+=(\"$ms\") ${name}_rss+=(\"$rss\") ${name}_cpu+=(\"$cpu\")"
}

net_setup_ms=() net_setup_rss=() image_fetch_ms=() image_fetch_rss=() image_restart_ms=() image_restart_rss=()
seed_iso_ms=() seed_iso_rss=() vmm_ms=() vmm_rss=() total_ms=() total_cpu=()
net_setup_cpu=() image_fetch_cpu=() seed_iso_cpu=() vmm_cpu=()
for ((run = 0; run <= RUNS; run++)); do # run 0 warms the caches (image download, page cache) and is not kept
  RUN=$WORK/r$run/run DISK=$WORK/r$run/disk
  mkdir -p "$RUN" "$DISK"
  chown 65534:65534 "$RUN" "$DISK"
  chmod 755 "$WORK/r$run"
  # net-setup: a fresh Calico-shaped pod netns each run (a new pod).
  pod_netns
  timed net_setup "$POD_NS" "${ENV0[@]}" BERTH_RUN_DIR="$RUN" RESOLV_CONF="$WORK/config/resolv.conf" \
    TAP_UID=65534 TAP_GID=65534 TERMINATION_LOG="$RUN/termination-log" "$BIN/net-setup"
  # image-fetch: the image is in the node's cache (IMAGE_DIR shared by all runs), a new VM's overlay.
  FETCH_ENV=("${AS_VM[@]}" "${ENV0[@]}" BERTH_RUN_DIR="$RUN" IMG_SOURCE="http://$NODE_IP:$HTTP_PORT/base.qcow2"
    IMAGE_DIR="$WORK/images" DISK_DIR="$DISK" DISK_SIZE=4Gi TERMINATION_LOG="$RUN/termination-log" "$BIN/image-fetch")
  timed image_fetch "$SRV_POD" "${FETCH_ENV[@]}"
  # seed-iso: typical user-data, meta-data and a key, into the new run dir.
  timed seed_iso "$POD_NS" "${AS_VM[@]}" "${ENV0[@]}" BERTH_RUN_DIR="$RUN" USERDATA="$WORK/config/user-data" \
    METADATA="$WORK/config/meta-data" SSH_AUTHORIZED_KEYS="$(cat "$WORK/id.pub")" \
    TERMINATION_LOG="$RUN/termination-log" "$BIN/seed-iso"
  # vmm --dry-run: plans QEMU's command line from the env, the overlay, the seed and the tap.
  timed vmm "$POD_NS" "${AS_VM[@]}" "${ENV0[@]}" BERTH_RUN_DIR="$RUN" DISK_DIR="$DISK" IMAGE_DIR="$WORK/images" \
    ACCEL=tcg VM_CPUS=1 VM_MEMORY=512Mi TERMINATION_LOG="$RUN/termination-log" "$BIN/vmm" --dry-run
  # image-fetch again on the same dirs: a restarted pod (cached image, existing overlay). Not in the total.
  timed image_restart "$SRV_POD" "${FETCH_ENV[@]}"
  ip netns del "$POD_NS"
  ip netns del "$NODE_NS"
  if ((run == 0)); then
    net_setup_ms=() net_setup_rss=() image_fetch_ms=() image_fetch_rss=() image_restart_ms=() image_restart_rss=()
    seed_iso_ms=() seed_iso_rss=() vmm_ms=() vmm_rss=()
    net_setup_cpu=() image_fetch_cpu=() seed_iso_cpu=() vmm_cpu=()
    [[ $(grep -c 'GET /base.qcow2' "$WORK/http.log") -ge 1 ]] || fail "image-fetch did not download in the warm-up"
    continue
  fi
  total_ms+=("$(calc "${net_setup_ms[-1]} + ${image_fetch_ms[-1]} + ${seed_iso_ms[-1]} + ${vmm_ms[-1]}")")
  total_cpu+=("$(calc "${net_setup_cpu[-1]} + ${image_fetch_cpu[-1]} + ${seed_iso_cpu[-1]} + ${vmm_cpu[-1]}")")
  log "run $run: net-setup ${net_setup_ms[-1]} ms ${net_setup_rss[-1]} KiB; image-fetch ${image_fetch_ms[-1]} ms ${image_fetch_rss[-1]} KiB" \
    "(restart ${image_restart_ms[-1]} ms); seed-iso ${seed_iso_ms[-1]} ms ${seed_iso_rss[-1]} KiB; vmm --dry-run ${vmm_ms[-1]} ms ${vmm_rss[-1]} KiB; total ${total_ms[-1]} ms, CPU ${total_cpu[-1]} ms"
  rm -rf "$WORK/r$run"
done
gets=$(grep -c 'GET /base.qcow2' "$WORK/http.log" || true)

ratios() { # DIVISOR V... → "min med max" of V/DIVISOR
  local d=$1 v r=()
  shift
  for v in "$@"; do r+=("$(ratio "$v" "$d")"); done
  fstats 3 "${r[@]}"
}
MIB20=20480
{
  read -r a b c < <(ratios 300 "${total_ms[@]}")
  tsv_row "all stages together (wall) / 300 ms" "the goal, 300 ms" "$a" "$b" "$c" "< 1"
  read -r a b c < <(ratios 300 "${total_cpu[@]}")
  tsv_row "all stages together, CPU time (user + sys) / 300 ms" "the goal, 300 ms (CPU time: less load-dependent)" "$a" "$b" "$c" ""
  for s in net_setup:net-setup image_fetch:image-fetch seed_iso:seed-iso vmm:"vmm --dry-run"; do
    eval "v=(\"\${${s%%:*}_rss[@]}\")"
    read -r a b c < <(ratios "$MIB20" "${v[@]}")
    tsv_row "peak RSS ${s#*:} / 20 MiB" "the goal, 20 MiB" "$a" "$b" "$c" "< 1"
  done
} >"$OUT/stages.tsv"

row() { # LABEL DIGITS GOAL V...
  local l=$1 d=$2 g=$3
  shift 3
  read -r x y z < <(fstats "$d" "$@")
  echo "$l|$x|$y|$z|$g"
}
mib() { local v; for v in "$@"; do awk -v k="$v" 'BEGIN { printf "%.1f\n", k / 1024 }'; done; }
rss_row() { # rss_row LABEL KIB...: a row of the values in MiB against the 20 MiB goal
  local label=$1 m
  shift
  mapfile -t m < <(mib "$@")
  row "$label" 1 '< 20' "${m[@]}"
}
cat >"$OUT/stages.md" <<EOF
## Stage overhead: wall time and peak RSS of each stage, warm caches

**What.** Each stage binary of bin/ run the way the pod runs it (ci/local-pod.sh's environment;
image-fetch, seed-iso and vmm as uid 65534), $RUNS runs after one untimed warm-up:
- **net-setup** in a fresh Calico-shaped pod netns each run (a new pod: bridge, tap, tun node,
  iptables chains, dnsmasq.conf);
- **image-fetch** with the base image already in the shared IMAGE_DIR (a small qcow2 made with
  qemu-img, served by \`python3 -m http.server\` on the node address in a netns; the warm-up
  downloaded it, the server saw $gets GET in all), making a new VM's overlay in a fresh DISK_DIR;
  and again on the same dirs (a restarted pod: nothing to do but check) — not in the total;
- **seed-iso** with typical user-data (user with a key, packages, write_files, runcmd), meta-data and
  an SSH key, into a fresh run dir;
- **vmm --dry-run**: plans QEMU's command line (ACCEL=tcg, 512 MiB) from the env, overlay, seed, tap.

**How.** Wall time: the monotonic clock around the process, read by a small wrapper inside the netns
(\`ip netns exec\`'s own cost is not counted), at nice $NICE so that other jobs on this shared machine
delay the stages less (a pod's init containers do not queue behind a dozen builds). CPU time: user + system of the stage and the children
it waited for (wait4). Peak RSS: \`/usr/bin/time -f %M\` (ru_maxrss). **Baseline:** the
goals themselves — there is no other implementation to race — all stages together < 300 ms, every Go
stage < 20 MiB peak RSS; the ratios are figure / goal.

$(md_table \
  "$(row 'net-setup (ms)' 1 '' "${net_setup_ms[@]}")" \
  "$(row 'image-fetch, cached image, new overlay (ms)' 1 '' "${image_fetch_ms[@]}")" \
  "$(row 'image-fetch, restarted pod (ms; not in the total)' 1 '' "${image_restart_ms[@]}")" \
  "$(row 'seed-iso (ms)' 1 '' "${seed_iso_ms[@]}")" \
  "$(row 'vmm --dry-run (ms)' 1 '' "${vmm_ms[@]}")" \
  "$(row '**all stages together (ms)**' 1 '< 300' "${total_ms[@]}")" \
  "$(row 'CPU time (user + sys, children included): net-setup (ms)' 1 '' "${net_setup_cpu[@]}")" \
  "$(row 'CPU time: image-fetch, new overlay (ms)' 1 '' "${image_fetch_cpu[@]}")" \
  "$(row 'CPU time: seed-iso (ms)' 1 '' "${seed_iso_cpu[@]}")" \
  "$(row 'CPU time: vmm --dry-run (ms)' 1 '' "${vmm_cpu[@]}")" \
  "$(row 'CPU time: all stages together (ms)' 1 '' "${total_cpu[@]}")" \
  "$(rss_row '**peak RSS net-setup (MiB)**' "${net_setup_rss[@]}")" \
  "$(rss_row '**peak RSS image-fetch (MiB)**' "${image_fetch_rss[@]}")" \
  "$(rss_row 'peak RSS image-fetch, restarted pod (MiB)' "${image_restart_rss[@]}")" \
  "$(rss_row '**peak RSS seed-iso (MiB)**' "${seed_iso_rss[@]}")" \
  "$(rss_row '**peak RSS vmm --dry-run (MiB)**' "${vmm_rss[@]}")")

The total is per run (the four stages of one run added), min/median/max over the runs. Wall
times stretch with the load average (waiting for a CPU; below), CPU times much less. Child
processes a stage starts (iptables-restore, qemu-img, dnsmasq --test) count in its wall time; its
peak RSS (ru_maxrss from wait4) is the largest of the stage and the children it waited for, not their sum.

$(bench_machine_line)
EOF
log "wrote $OUT/stages.md and $OUT/stages.tsv"
cat "$OUT/stages.tsv"
