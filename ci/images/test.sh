#!/usr/bin/env bash
# ci/images/test.sh [NAME...]: check the images `make images` built (ghcr.io/berth-vm/<NAME>:0.1.0),
# each in podman with no network (--network=none):
#   - the stage's binary runs and prints its variables (`-h`), exit 0;
#   - the tools it calls are there and run: iptables-nft, iptables-legacy (+ -save/-restore) and
#     `dnsmasq --test` in net-setup; qemu-img and install in image-fetch; dnsmasq --test of a
#     config like net-setup's in dnsmasq; in vmm, QEMU starts a TCG VM with virtio-net (its iPXE
#     ROM), virtio-blk, a VGA device and VNC, as the image's non-root user, and runs for 5 s;
#   - no shell: `sh` is not in the image;
#   - in novnc, websockify serves noVNC's vnc.html and its JavaScript on 127.0.0.1:6080 (read with
#     curl inside the container's network namespace) and refuses a WebSocket from another Origin;
#   - the image's default user: 107 for image-fetch, seed-iso and vmm, 65534 (nobody) for novnc,
#     root for net-setup and dnsmasq.
set -euo pipefail
PREFIX=${IMAGE_PREFIX:-ghcr.io/berth-vm}
VERSION=${IMAGE_VERSION:-0.1.0}
ALL=(net-setup image-fetch seed-iso vmm dnsmasq novnc)
names=("$@")
((${#names[@]})) || names=("${ALL[@]}")
# runc here cannot raise rlimits (no CAP_SYS_RESOURCE): ask for low ones.
RUN=(podman run --rm --network=none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
RUND=(podman run -d --network=none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096) # kept until read
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
ok() { printf 'images: %-12s ok: %s\n' "$1" "$2"; }
bad() { printf 'images: %-12s FAIL: %s\n' "$1" "$2" >&2; fails=$((fails + 1)); }
check() { # check NAME WHAT CMD...: run CMD, quiet; record the result
	local n=$1 what=$2
	shift 2
	if out=$("$@" 2>&1); then ok "$n" "$what"; else bad "$n" "$what: $(tail -3 <<<"$out")"; fi
}
# a dnsmasq.conf of the shape net-setup writes (DHCP only, no DNS, leases in the run dir)
mkdir -p "$work/run"
cat >"$work/run/dnsmasq.conf" <<'CONF'
port=0
interface=br0
bind-interfaces
no-resolv
no-hosts
pid-file=
dhcp-authoritative
no-ping
dhcp-leasefile=/run/berth/dnsmasq.leases
dhcp-range=192.168.254.2,192.168.254.2,255.255.255.252,12h
dhcp-option=option:router,192.168.254.1
dhcp-option=option:mtu,1450
CONF

for n in "${names[@]}"; do
	ref=$PREFIX/$n:$VERSION
	if ! podman image exists "$ref"; then bad "$n" "$ref not built (make images)"; continue; fi
	user=$(podman image inspect --format '{{.Config.User}}' "$ref")
	case $n in image-fetch | seed-iso | vmm) want=107:107 ;; novnc) want=65534:65534 ;; *) want=0:0 ;; esac
	if [ "$user" = "$want" ]; then ok "$n" "USER $user"; else bad "$n" "USER '$user', want $want"; fi
	if "${RUN[@]}" --entrypoint sh "$ref" -c true >/dev/null 2>&1; then bad "$n" "has a shell"; else ok "$n" "no shell"; fi
	case $n in
	dnsmasq)
		check "$n" "dnsmasq --test" "${RUN[@]}" -v "$work/run:/run/berth:ro" "$ref" --test --conf-file=/run/berth/dnsmasq.conf
		;;
	novnc)
		check "$n" "websockify --help" "${RUN[@]}" "$ref" --help
		;;
	*)
		if out=$("${RUN[@]}" "$ref" -h 2>&1) && grep -q 'VM_NAME' <<<"$out"; then ok "$n" "$n -h lists its variables"; else bad "$n" "$n -h: $(tail -3 <<<"$out")"; fi
		;;
	esac
	case $n in
	net-setup)
		for b in iptables-nft iptables-nft-save iptables-nft-restore iptables-legacy iptables-legacy-save iptables-legacy-restore; do
			check "$n" "$b -V" "${RUN[@]}" --entrypoint "$b" "$ref" -V
		done
		check "$n" "iptables-nft: a NAT rule with the extensions net-setup uses" "${RUN[@]}" --cap-add NET_ADMIN,NET_RAW --entrypoint iptables-nft "$ref" \
			-t nat -A POSTROUTING -s 192.168.254.2 -p tcp -m comment --comment berth -j MASQUERADE
		check "$n" "iptables-legacy: the same rule" "${RUN[@]}" --cap-add NET_ADMIN,NET_RAW --entrypoint iptables-legacy "$ref" \
			-t nat -A POSTROUTING -s 192.168.254.2 -p tcp -m comment --comment berth -j MASQUERADE
		check "$n" "dnsmasq --test (net-setup validates its config)" "${RUN[@]}" -v "$work/run:/run/berth:ro" --entrypoint dnsmasq "$ref" --test --conf-file=/run/berth/dnsmasq.conf
		;;
	image-fetch)
		check "$n" "qemu-img --version" "${RUN[@]}" --entrypoint qemu-img "$ref" --version
		check "$n" "qemu-img create (as uid 107)" "${RUN[@]}" --tmpfs /tmp:mode=1777 --entrypoint qemu-img "$ref" create -f qcow2 /tmp/x.qcow2 1G
		check "$n" "install (the image-cache step)" "${RUN[@]}" --entrypoint install "$ref" --version
		;;
	vmm)
		name=berth-images-test-$RANDOM
		"${RUND[@]}" --name "$name" --tmpfs /tmp:mode=1777 --entrypoint qemu-system-x86_64 "$ref" \
			-nodefaults -machine q35 -accel tcg -m 128 -display none -vga std -vnc 127.0.0.1:0 \
			-netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
			-drive if=none,id=d0,file=/tmp/none.qcow2,format=qcow2 -device virtio-blk-pci,drive=d0 \
			-serial none -monitor none >/dev/null 2>&1 || true
		# the disk does not exist: QEMU must get that far (its libraries and the TCG module load first)
		podman wait "$name" >/dev/null 2>&1 || true
		logs=$(podman logs "$name" 2>&1 || true)
		podman rm -f -t 1 "$name" >/dev/null 2>&1 || true
		if grep -q "Could not open '/tmp/none.qcow2'" <<<"$logs"; then ok "$n" "QEMU loads TCG and reports a missing disk by name"; else bad "$n" "QEMU: $logs"; fi
		name=berth-images-test-$RANDOM
		"${RUND[@]}" --name "$name" --entrypoint qemu-system-x86_64 "$ref" \
			-nodefaults -machine q35 -accel tcg -m 128 -display none -vga std -vnc 127.0.0.1:0 \
			-netdev user,id=n0 -device virtio-net-pci,netdev=n0 -serial none -monitor none >/dev/null
		sleep 5
		state=$(podman inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
		logs=$(podman logs "$name" 2>&1 || true)
		podman rm -f -t 1 "$name" >/dev/null 2>&1 || true
		if [ "$state" = running ]; then ok "$n" "QEMU runs a TCG VM with virtio-net and VNC as uid 107 (5 s)"; else bad "$n" "QEMU $state: $logs"; fi
		# FIRMWARE=uefi, SECURE_BOOT=true as vmm runs it: OVMF's secure build with Microsoft's keys
		# (the template, copy-on-write in /var/tmp: snapshot=on) starts and refuses OVMF's own unsigned EFI shell.
		name=berth-images-test-$RANDOM
		"${RUND[@]}" --name "$name" --tmpfs /var/tmp:mode=1777 --entrypoint qemu-system-x86_64 "$ref" \
			-nodefaults -machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on -accel tcg -m 256 -display none \
			-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
			-drive if=pflash,format=raw,unit=1,file=/usr/share/OVMF/OVMF_VARS_4M.ms.fd,snapshot=on \
			-serial stdio -monitor none >/dev/null
		logs=
		for _ in $(seq 1 120); do
			logs=$(podman logs "$name" 2>&1 || true)
			case $logs in *"Security Violation"*) break ;; esac
			sleep 0.5
		done
		podman rm -f -t 1 "$name" >/dev/null 2>&1 || true
		case $logs in
		*"Security Violation"*) ok "$n" "OVMF's Secure Boot build runs (TCG, SMM, Microsoft's keys) and refuses its unsigned EFI shell" ;;
		*) bad "$n" "OVMF Secure Boot: $(tail -c 600 <<<"$logs")" ;;
		esac
		# TPM=true: swtpm and its libraries (libtpms, libcrypto) load as uid 107 and offer a TPM 2.0.
		if out=$("${RUN[@]}" --entrypoint swtpm "$ref" socket --tpm2 --print-capabilities 2>&1) && [[ $out == *'"tpm-2.0"'* ]]; then
			ok "$n" "swtpm offers a TPM 2.0 ($(sed -n 's/.*"version": "\([^"]*\)".*/\1/p' <<<"$out"))"
		else
			bad "$n" "swtpm --print-capabilities: $out"
		fi
		;;
	novnc)
		# as the chart runs it: read-only, no capabilities; then HTTP from inside its network namespace
		name=berth-images-test-$RANDOM
		"${RUND[@]}" --name "$name" --read-only --cap-drop ALL "$ref" >/dev/null
		pid=$(podman inspect --format '{{.State.Pid}}' "$name")
		web() { nsenter -t "$pid" -n curl -s -o /dev/null -w '%{http_code} %{content_type}' --max-time 5 "$@" 2>/dev/null || true; }
		got=
		for _ in $(seq 1 50); do
			got=$(web http://127.0.0.1:6080/vnc.html)
			[ "${got%% *}" = 000 ] || break
			sleep 0.2
		done
		if [ "$got" = "200 text/html" ]; then ok "$n" "vnc.html on 127.0.0.1:6080"; else bad "$n" "vnc.html: '$got'; $(podman logs "$name" 2>&1 | tail -3)"; fi
		got=$(nsenter -t "$pid" -n curl -s --max-time 5 http://127.0.0.1:6080/ 2>/dev/null || true)
		if grep -q 'url=vnc.html' <<<"$got"; then ok "$n" "/ leads to vnc.html"; else bad "$n" "/: '$got'"; fi
		got=$(web http://127.0.0.1:6080/app/ui.js)
		case $got in "200 "*javascript) ok "$n" "noVNC's JavaScript ($got)" ;; *) bad "$n" "app/ui.js: '$got'" ;; esac
		ws=(-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Protocol: binary')
		got=$(web "${ws[@]}" -H 'Origin: http://attacker.example' http://127.0.0.1:6080/websockify)
		if [ "${got%% *}" = 403 ]; then ok "$n" "a WebSocket from another Origin is refused (403)"; else bad "$n" "foreign Origin: '$got'"; fi
		got=$(web "${ws[@]}" -H 'Origin: http://localhost:6080' http://127.0.0.1:6080/websockify)
		if [ "${got%% *}" = 101 ]; then ok "$n" "a WebSocket from http://localhost:6080 is accepted (101)"; else bad "$n" "own Origin: '$got'"; fi
		got=$(nsenter -t "$pid" -n ss -Htln | awk '{print $4}' | sort | tr '\n' ' ')
		if [ "$got" = "127.0.0.1:6080 " ]; then ok "$n" "listens on 127.0.0.1:6080 only"; else bad "$n" "listening: '$got'"; fi
		podman rm -f -t 1 "$name" >/dev/null 2>&1 || true
		;;
	esac
done
((fails == 0)) || { echo "images: $fails check(s) failed" >&2; exit 1; }
echo "images: all checks passed (${names[*]})"
