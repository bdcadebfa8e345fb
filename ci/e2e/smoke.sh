#!/usr/bin/env bash
# ci/e2e/smoke.sh: prove the cluster runs the kind of pod Berth is (without Berth): a NET_ADMIN
# init container that changes the pod's network, a native sidecar (init container with
# restartPolicy Always), a non-root, drop-ALL main container sharing an emptyDir with both; the pod
# is reached from the machine at its pod IP and through a ClusterIP Service (kube-proxy), and its
# network has the CNI's shape (bridge: /24; calico-like: /32 with gateway 169.254.1.1), and the
# pod-level sysctl net.ipv4.ip_forward=1 (allowlisted by the kubelet) is applied.
# Expects a running cluster (ci/cluster/up); CNI names the one it runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"
CNI=$(cat "$CLUSTER_DIR/cni-mode")
img=$("$here/toolbox-image.sh" | tail -1)
ns=berth-smoke-$RANDOM
cleanup() { [ "${KEEP:-0}" = 1 ] && return 0; kc delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { clog "FAIL: $*"; kc -n "$ns" describe pod smoke 2>&1 | tail -30 >&2; exit 1; }

kc create namespace "$ns" >/dev/null
wait_for 30 "service account in $ns" kc -n "$ns" get serviceaccount default
kc -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: smoke, labels: {app: smoke}}
spec:
  terminationGracePeriodSeconds: 2
  # the kubelet allowlists this unsafe sysctl (ci/cluster/up), the chart's non-privileged ip_forward mode
  securityContext: {sysctls: [{name: net.ipv4.ip_forward, value: "1"}]}
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: net
    image: $img
    imagePullPolicy: Never
    command: [sh, -ec, "ip link add berth0 type bridge; ip link set berth0 up; echo net-ok > /shared/net; chmod 644 /shared/net"]
    securityContext: {runAsUser: 0, capabilities: {add: [NET_ADMIN]}}
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: side
    image: $img
    imagePullPolicy: Never
    restartPolicy: Always
    command: [httpd, -f, -p, "8081", -h, /shared]
    securityContext: {runAsUser: 1000, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: $img
    imagePullPolicy: Never
    command: [sh, -c, "cat /shared/net; echo ip_forward=\$(cat /proc/sys/net/ipv4/ip_forward); ip -4 -o addr show dev eth0; ip -4 route; ip -o link show berth0; exec sleep 3600"]
    readinessProbe: {exec: {command: [wget, -qO-, "http://127.0.0.1:8081/net"]}, periodSeconds: 1}
    securityContext: {runAsUser: 1000, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: shared, mountPath: /shared}]
---
apiVersion: v1
kind: Service
metadata: {name: smoke}
spec:
  selector: {app: smoke}
  ports: [{port: 80, targetPort: 8081}]
YAML
kc -n "$ns" wait --for=condition=Ready pod/smoke --timeout=120s >/dev/null || fail "pod not Ready in 120s"
ip=$(kc -n "$ns" get pod smoke -o jsonpath='{.status.podIP}')
log=$(kc -n "$ns" logs smoke -c main)
grep -q net-ok <<<"$log" || fail "main container did not see the init container's file: $log"
grep -q 'berth0' <<<"$log" || fail "the NET_ADMIN init container's bridge is missing: $log"
grep -q 'ip_forward=1' <<<"$log" || fail "pod sysctl net.ipv4.ip_forward=1 not applied: $log"
case $CNI in
bridge) grep -q "inet $ip/24" <<<"$log" || fail "bridge: expected $ip/24 on eth0: $log"
	grep -q "default via 10.244.0.1" <<<"$log" || fail "bridge: expected default via 10.244.0.1: $log" ;;
calico-like) grep -q "inet $ip/32" <<<"$log" || fail "calico-like: expected $ip/32 on eth0: $log"
	grep -q "default via 169.254.1.1 dev eth0" <<<"$log" || fail "calico-like: expected default via 169.254.1.1: $log" ;;
esac
out=$(timeout 10 curl -fsS "http://$ip:8081/net") || fail "machine -> pod IP $ip:8081"
[ "$out" = net-ok ] || fail "machine -> pod IP: got '$out'"
svc=$(kc -n "$ns" get service smoke -o jsonpath='{.spec.clusterIP}')
wait_for 30 "Service $svc answers from the pod" kc -n "$ns" exec smoke -c main -- timeout 5 wget -qO- "http://$svc/net" ||
	fail "ClusterIP $svc did not answer (kube-proxy)"
clog "smoke OK (CNI=$CNI, pod $ip)"
