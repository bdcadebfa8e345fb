# ci/e2e/web-console.sh: the web console step of ci/e2e/cluster-test.sh (sourced; uses its kc, fail,
# wait_for, clog, $OUT, $CNI, $NS, $K8S_BIN, $KUBECONFIG_ADMIN and $pf_pid, which its cleanup kills).
#
# web_console_prepare: `npm ci` in ci/console (playwright-core, pinned by package-lock.json) and
#   Debian's Chromium present; once per run, before the cluster is used.
# web_console POD: as a person does with the chart's NOTES: `kubectl port-forward pod/POD 6080`,
#   then Chromium opens http://localhost:6080/vnc.html, which must reach noVNC's "Connected" and
#   show the VM's screen (ci/console/web-console.mjs: the canvas not blank, the Origin guard on);
#   the screenshot goes to out/e2e/web-console-$CNI.png (docs/console.png is one of them).

web_console_prepare() {
	command -v npm >/dev/null || fail "npm is not installed (ci/install-deps.sh: nodejs)"
	[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "no Chromium at ${CHROMIUM:-/usr/bin/chromium} (ci/install-deps.sh: chromium)"
	(cd "$repo/ci/console" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >"$OUT/npm-ci.log" 2>&1) ||
		fail "npm ci in ci/console (log: $OUT/npm-ci.log)"
}

web_console() {
	local pod=$1
	# the chart's NOTES say exactly this: port 6080 on this machine's loopback
	if (exec 3<>/dev/tcp/127.0.0.1/6080) 2>/dev/null; then
		fail "web console: 127.0.0.1:6080 on this machine is taken; the test forwards the port the NOTES print"
	fi
	"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" port-forward "pod/$pod" 6080 >"$OUT/web-console-pf-$CNI.log" 2>&1 8>&- &
	pf_pid=$!
	wait_for 20 "port-forward on 6080" bash -c "exec 3<>/dev/tcp/127.0.0.1/6080" || fail "web console: port-forward 6080 did not listen"
	if ! timeout 150 node "$repo/ci/console/web-console.mjs" http://localhost:6080/vnc.html "$OUT/web-console-$CNI.png" \
		>"$OUT/web-console-$CNI.log" 2>&1 8>&-; then
		cat "$OUT/web-console-$CNI.log" >&2
		kc -n "$NS" logs "$pod" -c novnc --tail=20 >&2 || true
		fail "web console: noVNC through port-forward 6080 (log $OUT/web-console-$CNI.log, screenshot $OUT/web-console-$CNI.png)"
	fi
	kill "$pf_pid" 2>/dev/null || true
	wait "$pf_pid" 2>/dev/null || true
	pf_pid=""
	sed 's/^/  /' "$OUT/web-console-$CNI.log" >&2
}
