package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/cavaliergopher/grab/v3"
)

// Downloader fetches one URL into a partial file, resuming it across attempts
// and across restarts of the container, with retries, progress and timeouts.
type Downloader struct {
	Log            *slog.Logger
	ConnectTimeout time.Duration // TCP connect and TLS handshake
	IdleTimeout    time.Duration // no response headers or no body bytes for this long: the attempt fails
	Attempts       int           // attempts per run for network errors and 5xx (the pod restart retries further)
	Backoff        time.Duration // first wait between attempts, doubled each time
	MaxBackoff     time.Duration
	ProgressEvery  time.Duration // progress line in the log at most this often
	BufferSize     int

	client *grab.Client
}

// NewDownloader returns a Downloader with the production defaults.
func NewDownloader(log *slog.Logger) *Downloader {
	return &Downloader{
		Log:            log,
		ConnectTimeout: 30 * time.Second,
		IdleTimeout:    60 * time.Second,
		Attempts:       6,
		Backoff:        2 * time.Second,
		MaxBackoff:     30 * time.Second,
		ProgressEvery:  5 * time.Second,
		BufferSize:     1 << 20,
	}
}

func (d *Downloader) grabClient() *grab.Client {
	if d.client != nil {
		return d.client
	}
	dialer := &net.Dialer{Timeout: d.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   d.ConnectTimeout,
		ResponseHeaderTimeout: d.IdleTimeout,
		// The bytes on disk must be the bytes of the URL: no transparent gzip,
		// which would also make Range offsets meaningless.
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
		MaxIdleConns:       2,
		IdleConnTimeout:    30 * time.Second,
	}
	d.client = &grab.Client{HTTPClient: &http.Client{Transport: tr}, UserAgent: "berth-image-fetch/0.1", BufferSize: d.BufferSize}
	return d.client
}

// partMeta is stored next to the partial file: what it is a prefix of. A
// partial file is only continued when the server names the same version.
type partMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size"` // total size of the body; -1 unknown
}

func (m partMeta) validator() string {
	if m.ETag != "" && !strings.HasPrefix(m.ETag, "W/") {
		return m.ETag
	}
	return m.LastModified
}

// Permanent errors are not retried: a 4xx other than 408 and 429.
type statusError struct {
	URL  string
	Code int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: server answered %d %s: check IMG_SOURCE", e.URL, e.Code, http.StatusText(e.Code))
}

func (e *statusError) permanent() bool {
	return e.Code >= 400 && e.Code < 500 && e.Code != http.StatusRequestTimeout && e.Code != http.StatusTooManyRequests
}

var (
	// errRestart: the partial file cannot be continued (the server ignored the
	// Range, or serves another version); start again from zero at once.
	errRestart = errors.New("partial file cannot be continued")
	errStalled = errors.New("stalled")
)

// Download fetches url into part (part+".meta" holds partMeta) and returns
// the body's sha256 once part holds the whole body and is synced. On failure
// part may be left for the next run to continue; it is removed on a
// permanent error.
func (d *Downloader) Download(ctx context.Context, url, part string) (string, error) {
	backoff := d.Backoff
	restarts := 0
	fol := newFollower(part)
	for attempt := 1; ; {
		size, err := d.attempt(ctx, url, part, fol)
		if err == nil {
			return fol.sum(size)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("download %s: %w", url, context.Cause(ctx))
		}
		if errors.Is(err, errRestart) && restarts < 3 {
			restarts++
			d.Log.Warn("starting the download again from zero", "url", url, "reason", err)
			removePart(part)
			fol.reset()
			continue
		}
		var se *statusError
		if errors.As(err, &se) && se.permanent() {
			removePart(part)
			return "", err
		}
		if isLocalWriteError(err) {
			removePart(part)
			var ns *noSpaceError
			if errors.Is(err, syscall.ENOSPC) && !errors.As(err, &ns) {
				err = fmt.Errorf("%w: IMAGE_DIR %s is full; the partial download was removed, free space there and the next start downloads it again", err, filepath.Dir(part))
			}
			return "", err
		}
		if attempt >= d.Attempts {
			return "", fmt.Errorf("download %s: giving up after %d attempts (the partial file is kept for the next start): %w", url, attempt, err)
		}
		d.Log.Warn("download failed, retrying", "url", url, "attempt", attempt, "of", d.Attempts, "wait", backoff, "err", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("download %s: %w", url, context.Cause(ctx))
		case <-time.After(backoff):
		}
		attempt++
		backoff = min(backoff*2, d.MaxBackoff)
	}
}

// isLocalWriteError: the disk is full, read-only, or not ours: retrying the
// download does not help.
func isLocalWriteError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOSPC)
}

func removePart(part string) {
	_ = os.Remove(part)
	_ = os.Remove(part + ".meta")
}

func readMeta(part string) (partMeta, bool) {
	b, err := os.ReadFile(part + ".meta")
	if err != nil {
		return partMeta{}, false
	}
	var m partMeta
	if json.Unmarshal(b, &m) != nil {
		return partMeta{}, false
	}
	return m, true
}

func writeMeta(part string, m partMeta) error {
	b, _ := json.Marshal(m)
	return fsutil.WriteFileAtomic(part+".meta", b, 0o644)
}

// attempt is one GET (grab may send a HEAD first to learn the size and
// whether ranges are served).
func (d *Downloader) attempt(ctx context.Context, url, part string, fol *follower) (int64, error) {
	var offset int64
	meta, haveMeta := readMeta(part)
	if fi, err := os.Stat(part); err == nil {
		offset = fi.Size()
	}
	resume := offset > 0 && haveMeta && meta.URL == url && meta.validator() != "" && (meta.Size < 0 || offset <= meta.Size)
	if offset > 0 && !resume {
		d.Log.Info("partial file cannot be continued, starting from zero", "part", part, "bytes", offset)
		removePart(part)
		fol.reset()
		offset = 0
	} else if offset == 0 {
		removePart(part)
		fol.reset()
	}

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := grab.NewRequest(part, url)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", url, err)
	}
	req = req.WithContext(actx)
	req.NoCreateDirectories = true
	req.IgnoreRemoteTime = true
	req.NoResume = !resume
	if resume {
		// If-Range: the server sends the rest only if it is still this version,
		// else the whole body with 200 (which restarts from zero below).
		req.HTTPRequest.Header.Set("If-Range", meta.validator())
		d.Log.Info("continuing partial download", "url", url, "from", offset, "of", meta.Size)
	}
	var newMeta partMeta
	req.BeforeCopy = func(r *grab.Response) error {
		hr := r.HTTPResponse
		if hr.Request.Header.Get("Range") != "" {
			if err := checkResume(hr, offset, meta); err != nil {
				return err
			}
			return checkSpace(filepath.Dir(part), hr.ContentLength, meta.Size)
		}
		// A whole body from zero: grab truncates the file before writing.
		fol.reset()
		if hr.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: answered %d to a request without Range", url, hr.StatusCode)
		}
		if err := checkSpace(filepath.Dir(part), hr.ContentLength, hr.ContentLength); err != nil {
			return err
		}
		newMeta = partMeta{URL: url, ETag: hr.Header.Get("ETag"), LastModified: hr.Header.Get("Last-Modified"), Size: hr.ContentLength}
		// Recorded before the first byte is written: a partial file never
		// exists without knowing what it is a prefix of.
		return writeMeta(part, newMeta)
	}

	start := time.Now()
	resp := d.grabClient().Do(req)
	d.watch(actx, cancel, resp, offset, start, fol)
	if err := resp.Err(); err != nil {
		if errors.Is(context.Cause(actx), errStalled) {
			return 0, fmt.Errorf("GET %s: no data for %s: %w", url, d.IdleTimeout, errStalled)
		}
		if sc, ok := err.(grab.StatusCodeError); ok {
			return 0, &statusError{URL: url, Code: int(sc)}
		}
		if errors.Is(err, grab.ErrBadLength) {
			return 0, fmt.Errorf("GET %s: %w: %w", url, err, errRestart)
		}
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	if hr := resp.HTTPResponse; hr != nil && hr.Request.Method == http.MethodHead {
		// grab found the partial file already complete by its size (HEAD):
		// only trust it if the server still names the same version.
		if v := hr.Header.Get("ETag"); meta.ETag != "" && v != meta.ETag {
			return 0, fmt.Errorf("complete partial file, but the server's ETag changed: %w", errRestart)
		}
		if v := hr.Header.Get("Last-Modified"); meta.ETag == "" && v != meta.LastModified {
			return 0, fmt.Errorf("complete partial file, but the server's Last-Modified changed: %w", errRestart)
		}
		newMeta = meta
	}
	if newMeta.URL == "" {
		newMeta = meta
	}
	fi, err := os.Stat(part)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", url, err)
	}
	if newMeta.Size >= 0 && fi.Size() != newMeta.Size {
		return 0, fmt.Errorf("GET %s: got %d bytes, want %d", url, fi.Size(), newMeta.Size)
	}
	if err := fsutil.SyncFile(part); err != nil {
		return 0, err
	}
	el := time.Since(start)
	d.Log.Info("downloaded", "url", url, "bytes", fi.Size(), "resumed_from", offset, "seconds", fmt.Sprintf("%.1f", el.Seconds()),
		"rate", rate(float64(fi.Size()-offset)/el.Seconds()))
	return fi.Size(), nil
}

// noSpaceError: the volume has less room than the rest of the image needs, so
// nothing more is written (a hostPath cache shares the node's disk: filling it
// would put the node under disk pressure). It is ENOSPC for errors.Is.
type noSpaceError struct {
	Dir        string
	Free, Need int64
	Total      int64 // -1: unknown
}

func (e *noSpaceError) Error() string {
	total := ""
	if e.Total >= 0 {
		total = fmt.Sprintf(" (%s in all)", mib(e.Total))
	}
	return fmt.Sprintf("IMAGE_DIR %s: no space left on device: %s free, the image needs %s more%s; nothing was written: free space there (or give the images volume more room) and the next start downloads it",
		e.Dir, mib(e.Free), mib(e.Need), total)
}

func (e *noSpaceError) Unwrap() error { return syscall.ENOSPC }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// checkSpace refuses a body of need bytes (-1: unknown, not checked) that does
// not fit in what dir's file system has free for this user.
func checkSpace(dir string, need, total int64) error {
	if need <= 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil // not knowing is no reason to refuse: a full volume still fails on write
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return &noSpaceError{Dir: dir, Free: free, Need: need, Total: total}
	}
	return nil
}

// checkResume accepts a response to a Range request only if it is 206 with a
// Content-Range starting at offset, for the recorded version and total size.
func checkResume(hr *http.Response, offset int64, meta partMeta) error {
	if hr.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("server answered %d to a Range request: %w", hr.StatusCode, errRestart)
	}
	start, total, err := parseContentRange(hr.Header.Get("Content-Range"))
	if err != nil {
		return fmt.Errorf("206 with %w: %w", err, errRestart)
	}
	if start != offset {
		return fmt.Errorf("206 starts at %d, want %d: %w", start, offset, errRestart)
	}
	if meta.Size >= 0 && total >= 0 && total != meta.Size {
		return fmt.Errorf("206 total size %d, recorded %d: %w", total, meta.Size, errRestart)
	}
	if et := hr.Header.Get("ETag"); et != "" && meta.ETag != "" && et != meta.ETag {
		return fmt.Errorf("206 for ETag %s, recorded %s: %w", et, meta.ETag, errRestart)
	}
	return nil
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be *: -1).
func parseContentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, fmt.Errorf("Content-Range %q", s)
		}
	}
	return start, total, nil
}

// watch logs progress every ProgressEvery and cancels the attempt with
// errStalled when no byte arrived for IdleTimeout. It returns when resp is done.
func (d *Downloader) watch(ctx context.Context, cancel context.CancelCauseFunc, resp *grab.Response, offset int64, start time.Time, fol *follower) {
	tick := time.NewTicker(min(time.Second, d.IdleTimeout/4+time.Millisecond))
	defer tick.Stop()
	// Hash what is written, as it is written (bytes below BytesComplete are final).
	hashDone := make(chan struct{})
	go func() {
		defer close(hashDone)
		for {
			select {
			case <-resp.Done:
				return
			case <-time.After(20 * time.Millisecond):
				_ = fol.catchUp(resp.BytesComplete()) // an error is found again by sum()
			}
		}
	}()
	defer func() { <-hashDone }()
	last, lastChange, lastLog, lastLogBytes := int64(-1), time.Now(), time.Now(), int64(0)
	for {
		select {
		case <-resp.Done:
			return
		case <-ctx.Done():
			<-resp.Done
			return
		case now := <-tick.C:
			n := resp.BytesComplete()
			if n != last {
				last, lastChange = n, now
			} else if now.Sub(lastChange) >= d.IdleTimeout {
				cancel(errStalled)
			}
			if now.Sub(lastLog) >= d.ProgressEvery {
				got := n - offset
				r := float64(n-lastLogBytes) / now.Sub(lastLog).Seconds()
				if lastLogBytes == 0 {
					r = float64(got) / now.Sub(start).Seconds()
				}
				attrs := []any{"bytes", n, "rate", rate(r)}
				if size := resp.Size(); size > 0 {
					attrs = append(attrs, "total", size, "percent", fmt.Sprintf("%.1f", 100*float64(n)/float64(size)))
					if r > 0 {
						attrs = append(attrs, "eta", time.Duration(float64(size-n)/r*float64(time.Second)).Round(time.Second).String())
					}
				}
				d.Log.Info("downloading", attrs...)
				lastLog, lastLogBytes = now, n
			}
		}
	}
}

func rate(bps float64) string {
	return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
}
