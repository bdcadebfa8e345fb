package stage

import "fmt"

// VNCPort is QEMU's VNC port (display 0): net-setup keeps it in the pod
// unless NO_VNC, so the VM never has it.
const VNCPort = 5900

// DefaultMetricsPort is the chart's metrics.port: the port vmm serves
// Prometheus metrics on when METRICS_PORT is set.
const DefaultMetricsPort = 19100

// MetricsPortAllowed says what MetricsPort accepts.
var MetricsPortAllowed = fmt.Sprintf("must be empty (no metrics) or a TCP port from 1024 to 65535 in decimal digits, not %d (VNC's)", VNCPort)

// MetricsPort reads METRICS_PORT, the one rule for net-setup (which keeps
// the port in the pod: the VM loses it) and vmm (which serves /metrics on
// it): 0 when unset or empty (no metrics), else 1024-65535 and not VNCPort.
func (e Env) MetricsPort() (int, error) {
	v, ok := e.Lookup("METRICS_PORT")
	if !ok {
		return 0, nil
	}
	n, err := e.Int("METRICS_PORT", 0, 1024, 65535)
	if err != nil || n == VNCPort {
		return 0, BadInput("METRICS_PORT", v, MetricsPortAllowed)
	}
	return n, nil
}
