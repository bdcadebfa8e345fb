package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Path is where the metrics are served.
const Path = "/metrics"

// The HTTP server's bounds: a scrape is one small request and answer.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = ScrapeTimeout + 5*time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
)

// Handler serves the registry's metrics in Prometheus' text format (the
// format every Prometheus scrapes; no compression, no protobuf: a VM's
// metrics are a few kilobytes) at Path, and 404 elsewhere.
func Handler(log *slog.Logger, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		mfs, err := reg.Gather()
		if err != nil {
			log.Warn("metrics: gather", "err", err) // what was gathered is still served
		}
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				log.Debug("metrics: write", "err", err) // the scraper went away
				return
			}
		}
	})
	return mux
}

// Registry returns a registry holding c only: no Go runtime or process
// collectors (vmm's own figures are not the VM's, and they cost memory).
func Registry(c prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register the metrics collector: %w", err)
	}
	return reg, nil
}

// Serve listens on TCP port (every address of the pod; net-setup keeps the
// port from the VM) and serves h until ctx ends, then shuts down. A port
// that cannot be bound is an error at once.
func Serve(ctx context.Context, log *slog.Logger, port int, h http.Handler) error {
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("metrics: listen on TCP port %d (METRICS_PORT): %w", port, err)
	}
	return ServeListener(ctx, log, l, h)
}

// ServeListener is Serve on a listener it owns (tests pass one on port 0).
func ServeListener(ctx context.Context, log *slog.Logger, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving metrics", "addr", l.Addr().String(), "path", Path)
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done // Shutdown has returned
		return nil
	}
	return fmt.Errorf("metrics: serve: %w", err)
}
