package fetch

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"github.com/berth-vm/berth/common/artifact"
)

// Redaction: a URL's userinfo, query and fragment may hold secrets (a
// password, a pre-signed URL's X-Amz-Signature, a token): wherever image-fetch
// prints a URL (logs, errors, the termination message, --dry-run, records on
// disk) it keeps the scheme, host and path only.

// RedactURL returns u with its userinfo, query and fragment replaced by
// REDACTED (their presence is kept visible, their content is not).
func RedactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User("REDACTED")
	}
	if c.RawQuery != "" || c.ForceQuery {
		c.RawQuery, c.ForceQuery = "REDACTED", false
	}
	if c.Fragment != "" || c.RawFragment != "" {
		c.Fragment, c.RawFragment = "REDACTED", ""
	}
	return c.String()
}

// urlInText finds URLs in free text (an error from net/http quotes them as
// Get "https://...": the quote ends the match).
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>\x60]+`)

// RedactText redacts every URL in s (see RedactURL). A URL that does not
// parse loses everything after its first '?' or '#' and its userinfo.
func RedactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		if u, err := url.Parse(m); err == nil && u.Host != "" {
			return RedactURL(u)
		}
		return artifact.Shown(m)
	})
}

// redactedError prints err redacted; errors.As and errors.Is still see the
// chain (so bad input keeps its exit code 2).
type redactedError struct{ err error }

func (e redactedError) Error() string { return RedactText(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

// redactErr wraps err so that its message, wherever printed, is redacted.
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{err}
}

// redactHandler is a slog.Handler that redacts URLs in the message and in
// every attribute (strings, errors, anything printed with %v).
type redactHandler struct{ h slog.Handler }

// RedactingLogger returns a logger that redacts URLs in everything it logs.
func RedactingLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(redactHandler); ok {
		return l
	}
	return slog.New(redactHandler{l.Handler()})
}

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	n := slog.NewRecord(rec.Time, rec.Level, RedactText(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		n.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, n)
}

func (r redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redactAttr(a)
	}
	return redactHandler{r.h.WithAttrs(out)}
}

func (r redactHandler) WithGroup(name string) slog.Handler { return redactHandler{r.h.WithGroup(name)} }

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, RedactText(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = redactAttr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if s := fmt.Sprint(v.Any()); strings.Contains(s, "://") {
			return slog.String(a.Key, RedactText(s))
		}
	}
	return a
}
