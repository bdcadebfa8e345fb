#!/usr/bin/env bash
# The whole Berth pod without Kubernetes: the same binaries (bin/), the same environment and the same
# order as the pod, in network namespaces, with a real guest (ci/testguest/build.sh). docs/local-pod.md.
#
#   ci/local-pod.sh [test]   build the pod, run every assertion, tear everything down (make test-local)
#   ci/local-pod.sh up       build the pod and leave it running; prints the SSH command (make demo)
#   ci/local-pod.sh down     stop what `up` left running and remove it
#
# Topology ("node" and "pod" are network namespaces made here, with a random suffix):
#   node netns: lo holds NODE_IP (the HTTP server serving the image binds it), a veth "uplink" with the
#     default route, ip_forward and proxy ARP on the pod's veth, a /32 route to the pod IP (Calico).
#   pod netns: eth0 = POD_IP/32, MTU POD_MTU, default via 169.254.1.1 onlink (Calico's shape), its own
#     resolv.conf (RESOLV_CONF). net-setup → image-fetch → seed-iso → dnsmasq (foreground) → vmm (TCG)
#     all run in it, like the pod's containers.
# Every wait is bounded; any failed assertion stops the run with "FAIL: ..." and exit 1; the trap always
# removes every namespace and process this script started. Phase timings are printed, never asserted.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
BIN=${BERTH_BIN:-$REPO/bin}
STATE_LINK=/run/berth-local-pod.state # where `up` records what `down` must remove

POD_IP=${POD_IP:-10.244.7.5}
NODE_IP=${NODE_IP:-10.244.0.1}
POD_MTU=${POD_MTU:-1450}
VM_NAME=${VM_NAME:-berth-local}
VM_IP=192.168.254.2
VM_GW=192.168.254.1
VM_UID=${VM_UID:-65534} # image-fetch, seed-iso and vmm (QEMU) run as this uid, like the pod's non-root containers
SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-90}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-420}
HTTP_PORT=${HTTP_PORT:-8081}
NAMESERVERS=(10.96.0.10 10.96.0.11)
SEARCH=(berth-test.svc.cluster.local svc.cluster.local cluster.local)

log() { printf '%s local-pod: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() {
  printf '%s local-pod: FAIL: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
  exit 1
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
TIMINGS=()
timing() { # timing NAME START
  local s
  s=$(secs "$2")
  TIMINGS+=("$1	$s")
  log "phase $1: ${s}s"
}

# wait_until SECONDS WHAT CMD...: run CMD every second until it succeeds; fail after SECONDS.
wait_until() {
  local t=$1 what=$2
  shift 2
  local deadline=$(($(date +%s) + t))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || fail "$what: not within ${t}s"
    sleep 1
  done
}

# wait_exit PID SECONDS: wait for a child to exit, bounded; sets EXIT_CODE (or fails).
wait_exit() {
  local pid=$1 t=$2 deadline=$(($(date +%s) + $2))
  while kill -0 "$pid" 2>/dev/null; do
    if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]]; then break; fi
    (($(date +%s) < deadline)) || fail "pid $pid did not exit within ${t}s"
    sleep 0.2
  done
  EXIT_CODE=0
  wait "$pid" || EXIT_CODE=$?
}

in_node() { ip netns exec "$NODE_NS" "$@"; }
in_pod() { ip netns exec "$POD_NS" "$@"; }

# ---------------------------------------------------------------- set-up and teardown

new_state() {
  local id
  id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  WORK=$(mktemp -d /var/tmp/berth-local-pod.XXXXXX)
  chmod 755 "$WORK" # the stages that run as VM_UID reach their dirs through it
  NODE_NS=lpnode-$id
  POD_NS=lppod-$id
  RUN_DIR=$WORK/run
  IMAGE_DIR=$WORK/images
  DISK_DIR=$WORK/disk
  cat >"$WORK/state.env" <<EOF
WORK=$WORK
NODE_NS=$NODE_NS
POD_NS=$POD_NS
EOF
}

# teardown: kill everything running in our two namespaces (only what this script started lives there),
# the HTTP server, then delete the namespaces and the work dir. Safe to run twice.
teardown() {
  set +e
  local ns pids
  for ns in "$POD_NS" "$NODE_NS"; do
    [[ -n $ns ]] && ip netns list | grep -qw "$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $pids ]] && kill $pids 2>/dev/null
  done
  for _ in $(seq 50); do # bounded: 5 s, then SIGKILL
    pids=$( (ip netns pids "$POD_NS"; ip netns pids "$NODE_NS") 2>/dev/null)
    [[ -z $pids ]] && break
    sleep 0.1
  done
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null
  for ns in "$POD_NS" "$NODE_NS"; do
    [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null
  done
  [[ -n ${WORK:-} && -d $WORK && ${KEEP_WORK:-0} != 1 ]] && rm -rf "$WORK"
  return 0
}

make_netns() {
  local t0
  t0=$(now)
  ip netns add "$NODE_NS"
  ip netns add "$POD_NS"
  in_node ip link set lo up
  in_pod ip link set lo up
  # node: its own address on lo (the HTTP server binds it), a dummy uplink with the default route
  # (so the kernel proxy-ARPs for 169.254.1.1 on the pod's veth), forwarding on.
  in_node ip addr add "$NODE_IP/32" dev lo
  in_node ip link add uplink type veth peer name uplink-peer # a stand-in for the node's NIC
  in_node ip link set uplink-peer up
  in_node ip link set uplink up
  in_node ip route add default dev uplink
  in_node sysctl -qw net.ipv4.ip_forward=1
  # Calico-shaped pod interface: /32, default via 169.254.1.1 onlink, proxy ARP on the node side.
  in_node ip link add calipod0 mtu "$POD_MTU" type veth peer name eth0 mtu "$POD_MTU" netns "$POD_NS"
  in_node sysctl -qw net.ipv4.conf.calipod0.proxy_arp=1
  in_node sysctl -qw net.ipv4.neigh.calipod0.proxy_delay=0
  in_node ip link set calipod0 up
  in_node ip route add "$POD_IP/32" dev calipod0 scope link
  in_pod ip addr add "$POD_IP/32" dev eth0
  in_pod ip link set eth0 up
  in_pod ip route add 169.254.1.1 dev eth0 scope link
  in_pod ip route add default via 169.254.1.1 dev eth0 onlink
  timing netns "$t0"
}

# The pod's files: resolv.conf, user-data, meta-data, an SSH key; the image served over HTTP.
make_pod_files() {
  mkdir -p "$RUN_DIR" "$IMAGE_DIR" "$DISK_DIR" "$WORK/www" "$WORK/config"
  {
    for n in "${NAMESERVERS[@]}"; do echo "nameserver $n"; done
    echo "search ${SEARCH[*]}"
    echo "options ndots:5"
  } >"$WORK/config/resolv.conf"
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/id" -C berth-local-pod
  cat >"$WORK/config/user-data" <<'EOF'
#cloud-config
runcmd:
  - [ sh, -c, 'echo berth-runcmd-ok > /var/lib/berth-marker' ]
EOF
  : >"$WORK/config/meta-data"
  ln -s "$GUEST_IMAGE" "$WORK/www/testguest.qcow2"
  chown -R "$VM_UID:$VM_UID" "$IMAGE_DIR" "$DISK_DIR"
  chown "$VM_UID:$VM_UID" "$RUN_DIR"
}

start_http() {
  # Background jobs use `ip netns exec` itself, not in_node/in_pod: a shell function run with & is a
  # subshell, and $! would be that subshell instead of the program.
  ip netns exec "$NODE_NS" setsid python3 -m http.server --bind "$NODE_IP" --directory "$WORK/www" "$HTTP_PORT" \
    >"$WORK/http.log" 2>&1 </dev/null &
  # From the pod netns: proves the Calico-shaped path (proxy ARP for 169.254.1.1) too.
  wait_until 15 "the pod reaches the node's HTTP server" in_pod curl -sfI -m 2 "http://$NODE_IP:$HTTP_PORT/testguest.qcow2"
}

image_gets() { grep -c 'GET /testguest.qcow2' "$WORK/http.log" || true; }

# ---------------------------------------------------------------- the pod's stages

AS_VM=(setpriv --reuid="$VM_UID" --regid="$VM_UID" --clear-groups)

stage_net_setup() {
  in_pod env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME="$VM_NAME" BERTH_RUN_DIR="$RUN_DIR" \
    RESOLV_CONF="$WORK/config/resolv.conf" TAP_UID="$VM_UID" TAP_GID="$VM_UID" \
    "$BIN/net-setup" >>"$WORK/net-setup.log" 2>&1 || { tail -20 "$WORK/net-setup.log" >&2; fail "net-setup exited $?"; }
}

stage_image_fetch() {
  in_pod "${AS_VM[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME="$VM_NAME" BERTH_RUN_DIR="$RUN_DIR" \
    IMG_SOURCE="http://$NODE_IP:$HTTP_PORT/testguest.qcow2" IMAGE_DIR="$IMAGE_DIR" DISK_DIR="$DISK_DIR" \
    DISK_SIZE=4Gi \
    "$BIN/image-fetch" >>"$WORK/image-fetch.log" 2>&1 || { tail -20 "$WORK/image-fetch.log" >&2; fail "image-fetch failed"; }
}

stage_seed_iso() {
  in_pod "${AS_VM[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME="$VM_NAME" BERTH_RUN_DIR="$RUN_DIR" \
    USERDATA="$WORK/config/user-data" METADATA="$WORK/config/meta-data" \
    SSH_AUTHORIZED_KEYS="$(cat "$WORK/id.pub")" \
    "$BIN/seed-iso" >>"$WORK/seed-iso.log" 2>&1 || { tail -20 "$WORK/seed-iso.log" >&2; fail "seed-iso failed"; }
}

start_dnsmasq() {
  [[ -f $RUN_DIR/dnsmasq.conf ]] || fail "net-setup wrote no $RUN_DIR/dnsmasq.conf"
  ip netns exec "$POD_NS" setsid dnsmasq --keep-in-foreground --conf-file="$RUN_DIR/dnsmasq.conf" \
    >>"$WORK/dnsmasq.log" 2>&1 </dev/null &
  DNSMASQ_PID=$!
  echo "DNSMASQ_PID=$DNSMASQ_PID" >>"$WORK/state.env"
  sleep 0.3
  kill -0 "$DNSMASQ_PID" 2>/dev/null || { cat "$WORK/dnsmasq.log" >&2; fail "dnsmasq exited at start"; }
}

# vmm's environment (the vm container's): env -i, so nothing of this shell leaks in.
vmm_env() {
  VMM_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME="$VM_NAME" BERTH_RUN_DIR="$RUN_DIR"
    DISK_DIR="$DISK_DIR" IMAGE_DIR="$IMAGE_DIR" ACCEL=tcg VM_CPUS=2 VM_MEMORY=1Gi SHUTDOWN_TIMEOUT="$SHUTDOWN_TIMEOUT"
    READY_TCP_PORT=22)
}

# start_vmm LOG: vmm's stdout is the guest console (what `kubectl logs -c vm` shows).
start_vmm() {
  local out=$1
  vmm_env
  ip netns exec "$POD_NS" setsid "${AS_VM[@]}" "${VMM_ENV[@]}" "$BIN/vmm" >"$out" 2>&1 </dev/null &
  VMM_PID=$!
  echo "VMM_PID=$VMM_PID" >>"$WORK/state.env"
}

# The pod's start, in the pod's order; QEMU_EXEC_S is the time from net-setup's start to vmm's start.
run_pipeline() {
  local tag=$1 t0 t
  t0=$(now)
  t=$(now); stage_net_setup; timing "$tag/net-setup" "$t"
  t=$(now); stage_image_fetch; timing "$tag/image-fetch" "$t"
  t=$(now); stage_seed_iso; timing "$tag/seed-iso" "$t"
  [[ -f $RUN_DIR/seed.iso ]] || fail "seed-iso wrote no $RUN_DIR/seed.iso"
  [[ -f $DISK_DIR/$VM_NAME.qcow2 ]] || fail "image-fetch made no overlay $DISK_DIR/$VM_NAME.qcow2"
  if [[ -z ${DNSMASQ_PID:-} ]] || ! kill -0 "$DNSMASQ_PID" 2>/dev/null; then start_dnsmasq; fi
  start_vmm "$WORK/console-$tag.log"
  timing "$tag/stages-to-vmm-start" "$t0"
  BOOT_T0=$(now)
}

SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o ConnectTimeout=5 -o BatchMode=yes)
gssh() { in_node timeout 60 ssh -i "$WORK/id" "${SSH_OPTS[@]}" "debian@$POD_IP" "$@"; }

wait_ssh() {
  local tag=$1 deadline=$(($(date +%s) + BOOT_TIMEOUT))
  until gssh true 2>/dev/null; do
    if ! kill -0 "$VMM_PID" 2>/dev/null; then
      tail -30 "$WORK/console-$tag.log" >&2
      fail "vmm exited before the guest answered SSH"
    fi
    if (($(date +%s) >= deadline)); then
      tail -30 "$WORK/console-$tag.log" >&2
      fail "no SSH at $POD_IP:22 within ${BOOT_TIMEOUT}s"
    fi
    sleep 1
  done
  timing "$tag/boot-to-ssh" "$BOOT_T0"
}

# ---------------------------------------------------------------- assertions

# probe ADDR PROTO PORT: what the endpoint at ADDR answers (node netns), or "none".
probe() {
  in_node python3 - "$@" <<'EOF'
import socket, sys
addr, proto, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if proto == "tcp":
        s = socket.create_connection((addr, port), timeout=3)
        s.settimeout(3)
        print(s.recv(100).decode().strip() or "none")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(b"ping", (addr, port))
        print(s.recv(100).decode().strip() or "none")
except OSError as e:
    print("none (%s)" % e)
EOF
}

GUEST_SERVERS='
import socket, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"guest-tcp-%d\n" % port); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        _, a = s.recvfrom(100); s.sendto(b"guest-udp-%d\n" % port, a)
for f, p in ((tcp, 5900), (tcp, 8080), (udp, 9999)):
    threading.Thread(target=f, args=(p,), daemon=True).start()
threading.Event().wait()
'

assert_guest() {
  local got t
  t=$(now)
  got=$(gssh hostname)
  [[ $got == "$VM_NAME" ]] || fail "guest hostname is '$got', want VM_NAME '$VM_NAME'"
  log "ok: SSH to the pod IP $POD_IP with the seed's key; hostname = $got"

  gssh 'timeout 180 cloud-init status --wait' >/dev/null || fail "cloud-init status --wait failed or timed out"
  got=$(gssh 'cat /var/lib/berth-marker 2>/dev/null || true')
  [[ $got == berth-runcmd-ok ]] || fail "runcmd marker from user-data missing (got '$got')"
  log "ok: user-data runcmd ran"

  local resolv n
  resolv=$(gssh cat /etc/resolv.conf)
  for n in "${NAMESERVERS[@]}"; do
    grep -qx "nameserver $n" <<<"$resolv" || fail "guest resolv.conf lacks nameserver $n: $resolv"
  done
  # dhclient writes option 119's names as FQDNs (trailing dots): compare without them.
  [[ $(grep '^search ' <<<"$resolv" | sed 's/\.\( \|$\)/\1/g') == "search ${SEARCH[*]}" ]] || fail "guest resolv.conf lacks 'search ${SEARCH[*]}': $resolv"
  log "ok: guest resolv.conf has the pod's nameservers and search domains"

  got=$(gssh cat /sys/class/net/eth0/mtu)
  [[ $got == "$POD_MTU" ]] || fail "guest eth0 MTU is $got, want the pod's $POD_MTU"
  log "ok: guest MTU = pod MTU = $got"

  got=$(gssh "ip -4 -o addr show dev eth0 | awk '{print \$4}'")
  [[ $got == "$VM_IP/30" ]] || fail "guest eth0 has '$got', want $VM_IP/30"

  gssh "sudo systemd-run --quiet --unit berth-ports python3 -c '$GUEST_SERVERS'" || fail "could not start the guest's test servers"
  wait_until 20 "guest test servers listen" gssh 'ss -ltn | grep -q ":8080 "'
  got=$(probe "$POD_IP" tcp 8080)
  [[ $got == guest-tcp-8080 ]] || fail "TCP 8080 on the pod IP: got '$got', want the guest's answer"
  got=$(probe "$POD_IP" udp 9999)
  [[ $got == guest-udp-9999 ]] || fail "UDP 9999 on the pod IP: got '$got', want the guest's answer"
  got=$(probe "$POD_IP" tcp 5900)
  [[ $got != guest-* ]] || fail "TCP 5900 on the pod IP reached the guest ('$got'); it must stay in the pod"
  gssh 'ss -ltn | grep -q ":5900 "' || fail "the guest's 5900 listener is not up, so the 5900 check proves nothing"
  [[ $got != RFB* ]] || fail "TCP 5900 on the pod IP answered RFB: QEMU's VNC is reachable from outside the pod"
  log "ok: TCP 8080 and UDP 9999 reach the guest; TCP 5900 does not ($got)"
  assert_no_loopback_leak

  vmm_env
  in_pod "${AS_VM[@]}" "${VMM_ENV[@]}" "$BIN/vmm" probe ready >"$WORK/probe.log" 2>&1 ||
    { cat "$WORK/probe.log" >&2; fail "vmm probe ready fails while the guest answers SSH"; }
  in_pod "${AS_VM[@]}" "${VMM_ENV[@]}" "$BIN/vmm" probe live >"$WORK/probe.log" 2>&1 ||
    { cat "$WORK/probe.log" >&2; fail "vmm probe live fails while the guest runs"; }
  log "ok: vmm probe ready and probe live"
  timing assertions "$t"
}

# banner ADDR PORT (python3, in whichever netns or guest runs it): the first bytes ADDR:PORT sends.
BANNER='
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    s.settimeout(3)
    print(s.recv(64).decode(errors="replace").strip() or "none")
except OSError as e:
    print("none (%s)" % e)
'

# The pod's loopback services through the NAT (docs/security.md): QEMU's VNC answers RFB on the
# pod's 127.0.0.1:5900, and the guest gets no RFB banner at its gateway or at the pod IP. The
# control: the same path from the guest reaches its own 8080 through the pod IP (hairpin).
assert_no_loopback_leak() {
  local got a
  got=$(in_pod python3 -c "$BANNER" 127.0.0.1 5900)
  [[ $got == RFB* ]] || fail "QEMU's VNC does not answer RFB on the pod's 127.0.0.1:5900 ('$got'): the checks below would prove nothing"
  for a in "$VM_GW" "$POD_IP"; do
    got=$(gssh "python3 -c '$BANNER' $a 5900")
    [[ $got != RFB* ]] || fail "the guest reached QEMU's VNC at $a:5900 ('$got')"
  done
  got=$(gssh "python3 -c '$BANNER' $POD_IP 8080")
  [[ $got == guest-tcp-8080 ]] || fail "control: the guest's own 8080 through the pod IP answered '$got'"
  log "ok: VNC answers RFB on the pod's loopback only; the guest gets none at $VM_GW:5900 or $POD_IP:5900"
}

# SIGTERM to vmm: ACPI shutdown visible on the console, exit 0 within SHUTDOWN_TIMEOUT.
assert_sigterm() {
  local console=$1 t
  t=$(now)
  kill -TERM "$VMM_PID"
  wait_exit "$VMM_PID" $((SHUTDOWN_TIMEOUT + 15))
  timing sigterm-to-exit "$t"
  [[ $EXIT_CODE == 0 ]] || { tail -20 "$console" >&2; fail "vmm exited $EXIT_CODE after SIGTERM, want 0"; }
  grep -qE 'reboot: Power down|System Power Off|Reached target.*Power-Off' "$console" ||
    { tail -20 "$console" >&2; fail "console shows no guest shutdown after SIGTERM"; }
  (($(secs "$t" | cut -d. -f1) <= SHUTDOWN_TIMEOUT)) || fail "vmm took longer than SHUTDOWN_TIMEOUT=$SHUTDOWN_TIMEOUT s"
  log "ok: SIGTERM → clean guest shutdown on the console, vmm exit 0"
}

# ---------------------------------------------------------------- commands

preflight() {
  [[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
  local b
  for b in net-setup image-fetch seed-iso vmm; do
    [[ -x $BIN/$b ]] || fail "$BIN/$b missing: run make build"
  done
  GUEST_IMAGE=$("$REPO/ci/testguest/build.sh" | tail -1)
  [[ -f $GUEST_IMAGE ]] || fail "ci/testguest/build.sh printed no image"
}

cmd_test() {
  preflight
  new_state
  trap teardown EXIT
  trap 'exit 130' INT TERM
  log "work dir $WORK, namespaces $NODE_NS $POD_NS, guest $GUEST_IMAGE"
  make_netns
  make_pod_files
  start_http

  # 1. First start: download, new overlay, boot, every assertion.
  run_pipeline first
  [[ $(image_gets) -ge 1 ]] || fail "image-fetch did not download from the HTTP server"
  local inode token
  inode=$(stat -c %i "$DISK_DIR/$VM_NAME.qcow2")
  wait_ssh first
  assert_guest
  token=persist-$RANDOM$RANDOM
  gssh "echo $token | sudo tee /var/lib/berth-persist >/dev/null && sync" || fail "could not write in the guest"
  assert_sigterm "$WORK/console-first.log"

  # 2. Same disk dir again: no download, same overlay file, the file written before is there.
  local gets
  gets=$(image_gets)
  kill "$DNSMASQ_PID" 2>/dev/null; wait "$DNSMASQ_PID" 2>/dev/null || true; DNSMASQ_PID=
  run_pipeline second
  [[ $(image_gets) == "$gets" ]] || fail "the second start downloaded the image again"
  [[ $(stat -c %i "$DISK_DIR/$VM_NAME.qcow2") == "$inode" ]] || fail "the overlay was replaced by a new file"
  log "ok: second start: no download, same overlay file"
  wait_ssh second
  [[ $(gssh 'cat /var/lib/berth-persist') == "$token" ]] || fail "the file written before shutdown is gone"
  log "ok: data written before shutdown survived"

  # 3. QEMU killed: vmm exits non-zero; starting vmm again (the container restart) recovers.
  local qpid
  qpid=$(pgrep -P "$VMM_PID" -f qemu-system || true)
  [[ -n $qpid ]] || fail "no QEMU child of vmm (pid $VMM_PID)"
  kill -KILL "$qpid"
  wait_exit "$VMM_PID" 30
  [[ $EXIT_CODE != 0 ]] || fail "vmm exited 0 after QEMU was killed, want non-zero"
  log "ok: QEMU SIGKILLed → vmm exit $EXIT_CODE"
  start_vmm "$WORK/console-restart.log"
  BOOT_T0=$(now)
  wait_ssh restart
  [[ $(gssh 'cat /var/lib/berth-persist') == "$token" ]] || fail "data lost after QEMU was killed"
  log "ok: vmm restart after the kill recovers; data intact"
  kill -TERM "$VMM_PID"
  wait_exit "$VMM_PID" $((SHUTDOWN_TIMEOUT + 15))

  log "PASS"
  printf 'phase\tseconds\n' >&2
  printf '%s\n' "${TIMINGS[@]}" >&2
}

cmd_up() {
  preflight
  if [[ -f $STATE_LINK ]]; then fail "a local pod is already up ($(cat "$STATE_LINK")): run '$0 down' first"; fi
  new_state
  trap 'teardown' EXIT
  trap 'exit 130' INT TERM
  make_netns
  make_pod_files
  start_http
  run_pipeline up
  wait_ssh up
  echo "$WORK/state.env" >"$STATE_LINK"
  trap - EXIT
  cat <<EOF

Berth local pod is up: VM '$VM_NAME' has the pod IP $POD_IP (pod netns $POD_NS, node netns $NODE_NS).
  SSH:      ip netns exec $NODE_NS ssh -i $WORK/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null debian@$POD_IP
  console:  tail -f $WORK/console-up.log
  stop:     $0 down
EOF
}

cmd_down() {
  [[ -f $STATE_LINK ]] || { log "nothing is up"; return 0; }
  # shellcheck disable=SC1090
  source "$(cat "$STATE_LINK")"
  if [[ -n ${VMM_PID:-} ]] && kill -0 "$VMM_PID" 2>/dev/null; then
    kill -TERM "$VMM_PID"
    for _ in $(seq $((SHUTDOWN_TIMEOUT + 10))); do kill -0 "$VMM_PID" 2>/dev/null || break; sleep 1; done
  fi
  teardown
  rm -f "$STATE_LINK"
  log "down: removed $NODE_NS, $POD_NS and $WORK"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case ${1:-test} in
  test) cmd_test ;;
  up) cmd_up ;;
  down) cmd_down ;;
  *) echo "usage: $0 [test|up|down]" >&2; exit 2 ;;
  esac
fi
