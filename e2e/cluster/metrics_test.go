//go:build e2e

package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/berth-vm/berth/e2e/internal/wait"
)

// metricsPort is vm1's metrics.port (ci/e2e/values.yaml.in enables metrics at the default).
const metricsPort = 19100

// metrics: vmm's /metrics on the pod IP, scraped from the node as Prometheus does, parses as
// Prometheus' text format; the guest runs; its root disk's write and read counters move by what
// the guest writes and reads with O_DIRECT; SSH on the same pod IP still reaches the guest (the
// VM lost only the metrics port).
func (s *scenario) metrics(t *testing.T) {
	ctx := t.Context()
	mfs := s.scrape(t)
	if v, ok := sample(mfs, "berth_vm_run_state", "state", "running"); !ok || v != 1 {
		t.Errorf("berth_vm_run_state{state=running} = %v (present %v), want 1", v, ok)
	}
	if v, ok := sample(mfs, "berth_qmp_up"); !ok || v != 1 {
		t.Errorf("berth_qmp_up = %v (present %v), want 1", v, ok)
	}
	for _, name := range []string{"berth_vm_boot_lease_seconds", "berth_vm_boot_ready_seconds", "berth_qemu_resident_memory_bytes", "berth_vm_vcpu_seconds_total"} {
		if v, ok := sample(mfs, name); !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want above 0", name, v, ok)
		}
	}
	if v, ok := sample(mfs, "berth_vm_network_bytes_total", "direction", "receive"); !ok || v <= 0 {
		t.Errorf("the tap received %v bytes from the guest (present %v): it answers SSH", v, ok)
	}

	const mib = 16
	before := blockCounters(mfs)
	// O_DIRECT, so the page cache neither absorbs the write nor serves the read.
	cmd := fmt.Sprintf("dd if=/dev/urandom of=/var/tmp/berth-metrics bs=1M count=%d oflag=direct status=none && "+
		"dd if=/var/tmp/berth-metrics of=/dev/null bs=1M iflag=direct status=none && rm -f /var/tmp/berth-metrics && sync", mib)
	if out, err := s.ssh.RunFor(ctx, 120*time.Second, s.ip, cmd); err != nil {
		t.Fatalf("I/O in the guest: %v: %s", err, out)
	}
	// QEMU counts a request when it completes: the next scrape has it.
	var after map[string]float64
	if _, err := wait.For(ctx, "the root disk's counters to take the guest's I/O", 30*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		after = blockCounters(s.scrape(t))
		moved := after["write bytes"]-before["write bytes"] >= mib<<20 && after["read bytes"]-before["read bytes"] >= mib<<20
		return moved, fmt.Sprintf("before %v, after %v", before, after), nil
	}); err != nil {
		t.Error(err)
	}
	for _, k := range []string{"write ops", "read ops"} {
		if after[k] <= before[k] {
			t.Errorf("root disk %s did not move: %v then %v", k, before[k], after[k])
		}
	}
	if got, err := s.ssh.Line(ctx, s.ip, "hostname"); err != nil || got != vmName(s.pod) {
		t.Errorf("SSH on the pod IP beside the metrics port: %q, %v; want the guest's hostname", got, err)
	}
}

// scrape GETs http://<pod IP>:<metricsPort>/metrics from the node's network namespace and parses it.
func (s *scenario) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: s.node.DialContext, DisableKeepAlives: true}}
	url := "http://" + net.JoinHostPort(s.ip, strconv.Itoa(metricsPort)) + "/metrics"
	body, err := httpGet(t.Context(), c, url)
	if err != nil {
		t.Fatalf("scrape %s from the node: %v", url, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s is not Prometheus' text format: %v\n%s", url, err, tail(body, 20))
	}
	return mfs
}

// blockCounters are the root disk's bytes and ops, read and write ("read bytes", ...).
func blockCounters(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, op := range []string{"read", "write"} {
		out[op+" bytes"], _ = sample(mfs, "berth_vm_block_bytes_total", "disk", "root", "op", op)
		out[op+" ops"], _ = sample(mfs, "berth_vm_block_ops_total", "disk", "root", "op", op)
	}
	return out
}

// sample is the value of family name's first series with the labels (name, value pairs).
func sample(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
next:
	for _, m := range mfs[name].GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
