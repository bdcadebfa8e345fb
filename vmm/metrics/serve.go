package metrics

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/berth-vm/berth/vmm/plainhttp"
	"github.com/berth-vm/berth/vmm/promtext"
)

// Path is where the metrics are served.
const Path = "/metrics"

// writeTimeout bounds a scrape's answer: its QMP commands, then writing.
const writeTimeout = ScrapeTimeout + 5*time.Second

// Server returns the HTTP server of c's metrics in Prometheus' text format
// (the format every Prometheus scrapes; no compression, no protobuf: a VM's
// metrics are a few kilobytes) at Path, 404 elsewhere.
func Server(log *slog.Logger, c *Collector) *plainhttp.Server {
	return &plainhttp.Server{
		Path: Path, ContentType: promtext.ContentType, WriteTimeout: writeTimeout, Log: log,
		Body: func(ctx context.Context) []byte {
			set := c.Gather(ctx)
			if err := set.Err(); err != nil {
				log.Warn("metrics: a sample left out", "err", err) // what was gathered is still served
			}
			var b bytes.Buffer
			_, _ = set.WriteTo(&b) // a bytes.Buffer does not fail
			return b.Bytes()
		},
	}
}

// Serve listens on TCP port (every address of the pod; net-setup keeps the
// port from the VM) and serves s until ctx ends. A port that cannot be
// bound is an error at once.
func Serve(ctx context.Context, log *slog.Logger, port int, s *plainhttp.Server) error {
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("metrics: listen on TCP port %d (METRICS_PORT): %w", port, err)
	}
	log.Info("serving metrics", "addr", l.Addr().String(), "path", Path)
	if err := s.Serve(ctx, l); err != nil {
		return fmt.Errorf("metrics: serve: %w", err)
	}
	return nil
}
