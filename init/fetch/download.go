package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"github.com/berth-vm/berth/common/stage"
	"github.com/cavaliergopher/grab/v3"
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
	BufferSize     int

	client *grab.Client
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
	d.client = &grab.Client{HTTPClient: &http.Client{Transport: tr, CheckRedirect: checkRedirect}, UserAgent: "berth-image-fetch/0.1", BufferSize: d.BufferSize}
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
	fol := newFollower(part)
	for attempt := 1; ; {
		size, err := d.attempt(ctx, url, part, fol)
		if err == nil {
			return fol.sum(size)
		}
		if ctx.Err() != nil {
			return "", interrupted()
		}
		if errors.Is(err, errRestart) && restarts < 3 {
			restarts++
			d.Log.Warn("starting the download again from zero", "url", url, "reason", err)
			removePart(part)
			fol.reset()
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
	f, err := fsutil.Open(part + ".meta")
	if err != nil {
		return partMeta{}, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
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
	n, err := d.attemptInto(ctx, url, part, fol)
	if err != nil && !errors.Is(err, fsutil.ErrNotOwnFile) {
		// The partial file is opened before the request: one still empty
		// after a failure is nothing to continue (and none is said to be kept).
		if fi, serr := os.Lstat(part); serr == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			removePart(part)
		}
	}
	return n, err
}

func (d *Downloader) attemptInto(ctx context.Context, url, part string, fol *follower) (int64, error) {
	// A symlink, FIFO or directory planted at the partial file or its .meta
	// is refused and left alone (not removed as a stale partial file).
	for _, f := range []string{part, part + ".meta"} {
		if err := fsutil.CheckOwnFile(f); err != nil {
			return 0, err
		}
	}
	var offset int64
	meta, haveMeta := readMeta(part)
	if fi, err := os.Stat(part); err == nil {
		offset = fi.Size()
	}
	resume := offset > 0 && haveMeta && meta.URL == urlKey(url) && meta.validator() != "" && (meta.Size < 0 || offset <= meta.Size)
	if offset > 0 && !resume {
		d.Log.Info("partial file cannot be continued, starting from zero", "part", part, "bytes", offset)
		removePart(part)
		fol.reset()
		offset = 0
	} else if offset == 0 {
		removePart(part)
		fol.reset()
	}

	// grab opens the file by name. It gets a name that cannot be redirected:
	// the partial file is opened here without following a symlink (a link
	// planted at .<IMG_TARGET>.part once made the download overwrite the pet
	// disk), and grab reopens that very file through /proc/self/fd.
	pf, err := fsutil.OpenFile(part, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", url, err)
	}
	defer pf.Close()
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := grab.NewRequest(fmt.Sprintf("/proc/self/fd/%d", pf.Fd()), url)
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
		newMeta = partMeta{URL: urlKey(url), ETag: hr.Header.Get("ETag"), LastModified: hr.Header.Get("Last-Modified"), Size: hr.ContentLength}
		// Recorded before the first byte is written: a partial file never
		// exists without knowing what it is a prefix of.
		return writeMeta(part, newMeta)
	}

	start := time.Now()
	resp := d.grabClient().Do(req)
	d.watch(actx, cancel, resp, offset, start, fol)
	if err := resp.Err(); err != nil {
		if errors.Is(context.Cause(actx), errStalled) {
			return 0, fmt.Errorf("GET %s: no data for %s (IMG_FETCH_STALL_TIMEOUT): %w", url, d.IdleTimeout, errStalled)
		}
		var slow *slowError
		if errors.As(context.Cause(actx), &slow) {
			return 0, fmt.Errorf("GET %s: %w", url, slow)
		}
		if sc, ok := err.(grab.StatusCodeError); ok {
			if int(sc) == http.StatusRequestedRangeNotSatisfiable && req.HTTPRequest.Header.Get("Range") != "" {
				// The partial file is not a prefix of what the server has now.
				return 0, fmt.Errorf("GET %s: 416 to a Range request: %w", url, errRestart)
			}
			se := &statusError{URL: url, Code: int(sc)}
			if hr := resp.HTTPResponse; hr != nil {
				se.RetryAfter = retryAfter(hr.Header, time.Now())
			}
			return 0, se
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
	every := min(time.Second, d.IdleTimeout/4+time.Millisecond)
	if d.MinRate > 0 {
		every = min(every, d.RateWindow/4+time.Millisecond)
	}
	tick := time.NewTicker(every)
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
	// samples of (time, bytes) covering the last RateWindow, oldest first.
	type sample struct {
		t time.Time
		n int64
	}
	samples := []sample{{start, offset}}
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
	switch {
	case bps >= 1<<20:
		return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
	case bps >= 1<<10:
		return fmt.Sprintf("%.1f KiB/s", bps/(1<<10))
	}
	return fmt.Sprintf("%.1f B/s", bps)
}
