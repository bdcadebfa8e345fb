// Command fileserver serves one directory read-only over HTTP (GET and HEAD, ranges, Last-Modified)
// and logs every request. Berth's end-to-end test runs it as a pod so image-fetch downloads the
// test guest over the pod network for real.
//
//	fileserver [-listen :8080] [-dir /srv]
package main

import (
	"flag"
	"log/slog"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	dir := flag.String("dir", "/srv", "directory to serve")
	flag.Parse()
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		slog.Error("serve directory", "dir", *dir, "err", err)
		os.Exit(2)
	}
	files := http.FileServer(http.Dir(*dir))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		start := time.Now()
		files.ServeHTTP(w, r)
		slog.Info("request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "duration", time.Since(start))
	})
	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	slog.Info("serving", "dir", *dir, "listen", *listen)
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
}
