package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// Downloader fetches one URL into a partial file, resuming it across attempts
// and across restarts of the container, with retries, progress and timeouts.
type Downloader struct {
	Log            *slog.Logger
	ConnectTimeout time.Duration // TCP connect and TLS handshake
	IdleTimeout    time.Duration // no response headers or no body bytes for this long: the attempt fails
	Attempts       int           // attempts per run for retryable failures (the pod restart retries further)
	Backoff        time.Duration // first wait between attempts, doubled each time
	MaxBackoff     time.Duration
	MinRate        int64 // bytes/s over RateWindow below which the attempt fails; 0: none
	RateWindow     time.Duration
	Deadline       time.Duration // the whole Download ends after this long; 0: none
	ProgressEvery  time.Duration // progress line in the log at most this often
	BufferSize     int           // the copy buffer: each write to the file and each hash update is up to this size

	client *http.Client
}

// NewDownloader returns a Downloader with the production defaults
// (DefaultPolicy).
func NewDownloader(log *slog.Logger) *Downloader {
	d := &Downloader{
		Log:            log,
		ConnectTimeout: 30 * time.Second,
		ProgressEvery:  5 * time.Second,
		BufferSize:     1 << 20,
	}
	DefaultPolicy().Apply(d)
	return d
}

// maxRedirects is how many redirects one request follows (as net/http).
const maxRedirects = 10

// redirectError: a redirect that is never followed, whoever retries.
type redirectError struct {
	To     string // the target, without its query (it may hold a token)
	Reason string
}

func (e *redirectError) Error() string { return "redirect to " + e.To + ": " + e.Reason }

// checkRedirect follows only http(s) redirects, at most maxRedirects, never
// back to a URL already visited.
func checkRedirect(req *http.Request, via []*http.Request) error {
	to := RedactURL(req.URL)
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return &redirectError{To: to, Reason: "only http:// and https:// redirects are followed"}
	}
	if req.URL.Scheme == "http" && len(via) > 0 && via[0].URL.Scheme == "https" {
		// As apt refuses it: a download asked for over TLS never goes on in
		// the clear, where anyone on the path could serve another image.
		return &redirectError{To: to, Reason: "a redirect from https:// to http:// is refused (the image would travel unauthenticated)"}
	}
	for _, v := range via {
		if v.URL.String() == req.URL.String() {
			return &redirectError{To: to, Reason: fmt.Sprintf("a redirect loop (visited before, after %d redirects)", len(via))}
		}
	}
	if len(via) >= maxRedirects {
		return &redirectError{To: to, Reason: fmt.Sprintf("more than %d redirects", maxRedirects)}
	}
	return nil
}

// userAgent is sent with every request.
const userAgent = "berth-image-fetch/0.1"

func (d *Downloader) httpClient() *http.Client {
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
	d.client = &http.Client{Transport: tr, CheckRedirect: checkRedirect}
	return d.client
}

// partMeta is stored next to the partial file: what it is a prefix of. A
// partial file is only continued when the server names the same version.
type partMeta struct {
	// URL is the sha256 of the URL, not the URL: a pre-signed URL's query is
	// a secret, and the image cache is shared by every VM on the node.
	URL          string `json:"url_sha256"`
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

// statusError is an HTTP status that is not a success. A 4xx other than 408
// and 429 is permanent: the same request gets the same answer.
type statusError struct {
	URL  string
	Code int
	// RetryAfter is the server's Retry-After (429, 503), 0 when it gave none.
	RetryAfter time.Duration
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 10.2.3); 0 when absent, unreadable or in the past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: server answered %d %s", e.URL, e.Code, http.StatusText(e.Code))
}

func (e *statusError) permanent() bool {
	return e.Code >= 400 && e.Code < 500 && e.Code != http.StatusRequestTimeout && e.Code != http.StatusTooManyRequests
}

// slowError: fewer than MinRate bytes per second came over the window.
type slowError struct {
	Got     int64
	Over    time.Duration
	MinRate int64
}

func (e *slowError) Error() string {
	return fmt.Sprintf("too slow: %d bytes in the last %s (%s), below IMG_FETCH_MIN_RATE %s",
		e.Got, e.Over.Round(100*time.Millisecond), rate(float64(e.Got)/e.Over.Seconds()), rate(float64(e.MinRate)))
}

var (
	// errRestart: the partial file cannot be continued (the server ignored the
	// Range, or serves another version); start again from zero at once.
	errRestart  = errors.New("partial file cannot be continued")
	errStalled  = errors.New("stalled")
	errDeadline = errors.New("IMG_FETCH_DEADLINE reached")
)

// partNote says truthfully what is left of the download for the next start.
func partNote(part string) string {
	fi, err := os.Stat(part)
	if err != nil || fi.Size() == 0 {
		return "no partial file is kept"
	}
	return fmt.Sprintf("the partial file (%d bytes) is kept: the next start continues it if the server still serves the same version", fi.Size())
}

func partSize(part string) int64 {
	if fi, err := os.Stat(part); err == nil {
		return fi.Size()
	}
	return 0
}

// sourceError turns a failure that no retry can mend (the URL, its server's
// certificate, or its redirects are wrong) into bad input naming IMG_SOURCE
// (exit 2), or returns nil. 404 and 410 remove the partial file: there is
// no image at that URL any more to continue it from.
func sourceError(err error, url, part string) error {
	var re *redirectError
	if errors.As(err, &re) {
		return stage.BadInputf("IMG_SOURCE", url, "%s; %s", re, partNote(part))
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return stage.BadInputf("IMG_SOURCE", url, "the server's TLS certificate is not trusted (%v): for a private CA set SSL_CERT_FILE (a PEM bundle used instead of the system's) or SSL_CERT_DIR (directories of PEM files, besides the system bundle); %s",
			cve.Err, partNote(part))
	}
	var se *statusError
	if errors.As(err, &se) && se.permanent() {
		if se.Code == http.StatusNotFound || se.Code == http.StatusGone {
			removePart(part)
			return stage.BadInputf("IMG_SOURCE", url, "the server answers %d %s: there is no image at this URL (nothing is kept)", se.Code, http.StatusText(se.Code))
		}
		return stage.BadInputf("IMG_SOURCE", url, "the server answers %d %s, a refusal no retry changes (check the URL and its access rights); %s",
			se.Code, http.StatusText(se.Code), partNote(part))
	}
	return nil
}

// Download fetches url into part (part+".meta" holds partMeta) and returns
// the body's sha256 once part holds the whole body and is synced.
//
// Failures are of three kinds. Retryable (network errors, 408, 429, 5xx, a
// stall, a rate below MinRate): up to Attempts attempts with a doubling
// backoff, each failure logged; then an error (exit 1) that says whether a
// partial file is kept for the next start. Permanent (a bad redirect, an
// untrusted certificate, a 4xx): at once, an *stage.InputError naming
// IMG_SOURCE (exit 2). Local (the volume is full or not writable): at once,
// the partial file removed. Deadline bounds the whole call, waits included.
func (d *Downloader) Download(ctx context.Context, url, part string) (string, error) {
	start, startBytes := time.Now(), partSize(part)
	if d.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d.Deadline, errDeadline)
		defer cancel()
	}
	interrupted := func() error {
		if errors.Is(context.Cause(ctx), errDeadline) {
			got, el := partSize(part)-startBytes, time.Since(start)
			return fmt.Errorf("download %s: IMG_FETCH_DEADLINE %s reached: %d bytes in %s (%s on average); %s",
				url, d.Deadline, got, el.Round(100*time.Millisecond), rate(float64(got)/el.Seconds()), partNote(part))
		}
		return fmt.Errorf("download %s: %w; %s", url, context.Cause(ctx), partNote(part))
	}
	backoff := d.Backoff
	restarts := 0
	dg, buf := newDigest(), make([]byte, max(d.BufferSize, 64<<10))
	for attempt := 1; ; {
		err := d.attempt(ctx, url, part, dg, buf)
		if err == nil {
			return dg.hex(), nil
		}
		if ctx.Err() != nil {
			return "", interrupted()
		}
		if errors.Is(err, errRestart) && restarts < 3 {
			restarts++
			d.Log.Warn("starting the download again from zero", "url", url, "reason", err)
			removePart(part)
			dg.reset()
			continue
		}
		if errors.Is(err, fsutil.ErrNotOwnFile) {
			return "", err // planted, not ours: no retry helps, nothing is removed
		}
		if serr := sourceError(err, url, part); serr != nil {
			return "", serr
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
			if partSize(part) == 0 {
				removePart(part) // an empty file and its .meta are nothing to continue
			}
			return "", fmt.Errorf("download %s: giving up after %d attempts (IMG_FETCH_ATTEMPTS): %w; %s", url, attempt, err, partNote(part))
		}
		wait := backoff
		var se *statusError
		if errors.As(err, &se) && se.RetryAfter > wait {
			// The server's Retry-After, as far as IMG_FETCH_MAX_BACKOFF allows.
			wait = min(se.RetryAfter, max(d.MaxBackoff, backoff))
		}
		d.Log.Warn("download attempt failed, retrying", "url", url, "attempt", fmt.Sprintf("%d/%d", attempt, d.Attempts), "reason", err.Error(), "wait", wait)
		select {
		case <-ctx.Done():
			return "", interrupted()
		case <-time.After(wait):
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

// urlKey is what partMeta records of a URL.
func urlKey(url string) string {
	h := sha256.Sum256([]byte(url))
	return hex.EncodeToString(h[:])
}

// readMeta reads part's .meta, never through a symlink nor from a FIFO, and
// at most 64 KiB of it: anything else is no record (the download restarts).
func readMeta(part string) (partMeta, bool) {
	b, err := fsutil.ReadRecord(part + ".meta")
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

// attempt is one GET: the whole body, or the rest of the partial file with
// Range. On success part holds the whole body, synced, and dg is its sha256.
func (d *Downloader) attempt(ctx context.Context, url, part string, dg *digest, buf []byte) error {
	err := d.attemptInto(ctx, url, part, dg, buf)
	if err != nil && !errors.Is(err, fsutil.ErrNotOwnFile) {
		// The partial file is opened before the request: one still empty
		// after a failure is nothing to continue (and none is said to be kept).
		if fi, serr := os.Lstat(part); serr == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			removePart(part)
		}
	}
	return err
}

func (d *Downloader) attemptInto(ctx context.Context, url, part string, dg *digest, buf []byte) error {
	// A symlink, FIFO or directory planted at the partial file or its .meta
	// is refused and left alone (not removed as a stale partial file).
	for _, f := range []string{part, part + ".meta"} {
		if err := fsutil.CheckOwnFile(f); err != nil {
			return err
		}
	}
	meta, haveMeta := readMeta(part)
	// Opened without following a symlink (a link planted at
	// .<IMG_TARGET>.part once made the download overwrite the pet disk); all
	// that follows uses this descriptor, never the name again.
	pf, err := fsutil.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer pf.Close()
	fi, err := pf.Stat()
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	offset := fi.Size()
	resume := offset > 0 && haveMeta && meta.URL == urlKey(url) && meta.validator() != "" && (meta.Size < 0 || offset <= meta.Size)
	if offset > 0 && !resume {
		d.Log.Info("partial file cannot be continued, starting from zero", "part", part, "bytes", offset)
	}
	if !resume {
		if err := d.startOver(pf, part, dg); err != nil {
			return fmt.Errorf("download %s: %w", url, err)
		}
		offset = 0
	} else if dg.off != offset {
		// Left by an earlier run: its bytes are hashed once, here.
		dg.reset()
		t0 := time.Now()
		if err := dg.catchUp(ctx, pf, offset, buf); err != nil {
			return err
		}
		d.Log.Info("hashed the partial file left by an earlier run", "bytes", offset, "seconds", fmt.Sprintf("%.1f", time.Since(t0).Seconds()))
	}

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	req.Header.Set("User-Agent", userAgent)
	if resume {
		// If-Range: the server sends the rest only if it is still this version,
		// else the whole body with 200 (which restarts from zero below).
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		req.Header.Set("If-Range", meta.validator())
		d.Log.Info("continuing partial download", "url", url, "from", offset, "of", meta.Size)
	}
	start := time.Now()
	hr, err := d.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer hr.Body.Close()
	total, err := d.accept(hr, url, part, offset, meta, resume)
	if errors.Is(err, errComplete) {
		total = offset
	} else if err != nil {
		return err
	} else {
		if !resume {
			meta = partMeta{URL: urlKey(url), ETag: hr.Header.Get("ETag"), LastModified: hr.Header.Get("Last-Modified"), Size: hr.ContentLength}
			// Recorded before the first byte is written: a partial file never
			// exists without knowing what it is a prefix of.
			if err := writeMeta(part, meta); err != nil {
				return err
			}
		}
		var received atomic.Int64
		done := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			d.watch(actx, cancel, done, func() int64 { return offset + received.Load() }, total, offset, start)
		}()
		err = copyBody(&sink{f: pf, d: dg, queued: offset}, hr.Body, buf, &received)
		close(done)
		<-watched
		if err != nil {
			if errors.Is(context.Cause(actx), errStalled) {
				return fmt.Errorf("GET %s: no data for %s (IMG_FETCH_STALL_TIMEOUT): %w", url, d.IdleTimeout, errStalled)
			}
			var slow *slowError
			if errors.As(context.Cause(actx), &slow) {
				return fmt.Errorf("GET %s: %w", url, slow)
			}
			return fmt.Errorf("GET %s: %w", url, err)
		}
	}
	if meta.Size >= 0 && dg.off != meta.Size {
		return fmt.Errorf("GET %s: got %d bytes, want %d", url, dg.off, meta.Size)
	}
	if err := pf.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", part, err)
	}
	el := time.Since(start)
	d.Log.Info("downloaded", "url", url, "bytes", dg.off, "resumed_from", offset, "seconds", fmt.Sprintf("%.1f", el.Seconds()),
		"rate", rate(float64(dg.off-offset)/el.Seconds()))
	return nil
}

// startOver empties the partial file and forgets its record and hash.
func (d *Downloader) startOver(pf *os.File, part string, dg *digest) error {
	dg.reset()
	if err := os.Remove(part + ".meta"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return pf.Truncate(0)
}

// errComplete: the partial file already holds the whole body (a run ended
// between the last byte and the rename); there is nothing more to fetch.
var errComplete = errors.New("partial file complete")

// accept checks the response before a byte of its body is written and
// returns the body's total size (-1 unknown). To a Range request it wants a
// 206 continuing the file (checkResume) or a 416 saying the file is already
// whole; to a request without Range, a 200. The rest of the image must fit
// in IMAGE_DIR.
func (d *Downloader) accept(hr *http.Response, url, part string, offset int64, meta partMeta, resume bool) (int64, error) {
	if resume && hr.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		if err := checkComplete(hr, offset, meta); err != nil {
			return 0, err
		}
		return offset, errComplete
	}
	if hr.StatusCode < 200 || hr.StatusCode > 299 {
		return 0, &statusError{URL: url, Code: hr.StatusCode, RetryAfter: retryAfter(hr.Header, time.Now())}
	}
	if resume {
		if err := checkResume(hr, offset, meta); err != nil {
			return 0, err
		}
		return meta.Size, checkSpace(filepath.Dir(part), hr.ContentLength, meta.Size)
	}
	if hr.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: answered %d to a request without Range", url, hr.StatusCode)
	}
	return hr.ContentLength, checkSpace(filepath.Dir(part), hr.ContentLength, hr.ContentLength)
}

// checkComplete accepts a 416 to a Range request as "the partial file is
// whole" only if the file has the recorded size and the 416 says that is the
// whole body ("bytes */SIZE", RFC 9110 15.5.17) of the recorded version (a
// changed version fails If-Range and gets a 200 instead).
func checkComplete(hr *http.Response, offset int64, meta partMeta) error {
	cr := hr.Header.Get("Content-Range")
	total, err := strconv.ParseInt(strings.TrimPrefix(cr, "bytes */"), 10, 64)
	switch {
	case !strings.HasPrefix(cr, "bytes */") || err != nil:
		return fmt.Errorf("416 to a Range request, Content-Range %q: %w", cr, errRestart)
	case total != offset || meta.Size != offset:
		return fmt.Errorf("416 to a Range request: the server's size %d, the partial file's %d, recorded %d: %w", total, offset, meta.Size, errRestart)
	}
	if et := hr.Header.Get("ETag"); et != "" && meta.ETag != "" && et != meta.ETag {
		return fmt.Errorf("complete partial file, but the server's ETag changed: %w", errRestart)
	}
	if lm := hr.Header.Get("Last-Modified"); lm != "" && meta.ETag == "" && lm != meta.LastModified {
		return fmt.Errorf("complete partial file, but the server's Last-Modified changed: %w", errRestart)
	}
	return nil
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
// errStalled when no byte arrived for IdleTimeout, or with a *slowError
// below MinRate. got is the file's size so far (offset included), total the
// body's (-1 unknown). It returns when done is closed.
func (d *Downloader) watch(ctx context.Context, cancel context.CancelCauseFunc, done <-chan struct{}, got func() int64, total, offset int64, start time.Time) {
	every := min(time.Second, d.IdleTimeout/4+time.Millisecond)
	if d.MinRate > 0 {
		every = min(every, d.RateWindow/4+time.Millisecond)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last, lastChange, lastLog, lastLogBytes := int64(-1), time.Now(), time.Now(), int64(0)
	// samples of (time, bytes) covering the last RateWindow, oldest first.
	type sample struct {
		t time.Time
		n int64
	}
	samples := []sample{{start, offset}}
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			<-done
			return
		case now := <-tick.C:
			n := got()
			if n != last {
				last, lastChange = n, now
			} else if now.Sub(lastChange) >= d.IdleTimeout {
				cancel(errStalled)
			}
			if d.MinRate > 0 {
				samples = append(samples, sample{now, n})
				for len(samples) > 1 && !samples[1].t.After(now.Add(-d.RateWindow)) {
					samples = samples[1:]
				}
				// A whole window seen: its average must reach MinRate.
				if old := samples[0]; now.Sub(old.t) >= d.RateWindow {
					if got, over := n-old.n, now.Sub(old.t); float64(got) < float64(d.MinRate)*over.Seconds() {
						cancel(&slowError{Got: got, Over: over, MinRate: d.MinRate})
					}
				}
			}
			if now.Sub(lastLog) >= d.ProgressEvery {
				got := n - offset
				r := float64(n-lastLogBytes) / now.Sub(lastLog).Seconds()
				if lastLogBytes == 0 {
					r = float64(got) / now.Sub(start).Seconds()
				}
				attrs := []any{"bytes", n, "rate", rate(r)}
				if total > 0 {
					attrs = append(attrs, "total", total, "percent", fmt.Sprintf("%.1f", 100*float64(n)/float64(total)))
					if r > 0 {
						attrs = append(attrs, "eta", time.Duration(float64(total-n)/r*float64(time.Second)).Round(time.Second).String())
					}
				}
				d.Log.Info("downloading", attrs...)
				lastLog, lastLogBytes = now, n
			}
		}
	}
}

func rate(bps float64) string {
	switch {
	case bps >= 1<<20:
		return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
	case bps >= 1<<10:
		return fmt.Sprintf("%.1f KiB/s", bps/(1<<10))
	}
	return fmt.Sprintf("%.1f B/s", bps)
}
