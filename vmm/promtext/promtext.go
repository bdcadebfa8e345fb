// Package promtext writes Prometheus' text exposition format (version
// 0.0.4, the format every Prometheus and every scraper reads) for a handful
// of gauges and counters.
//
// vmm does not link the Prometheus client library for this: its registry,
// protobuf model and net/http server cost vmm about 6 MiB of resident
// memory (docs/benchmarks.md, "Metrics"), against a goal of 1 MiB for the
// whole feature. What vmm exposes is small and fixed (constant metrics
// made at scrape time, no histograms, no state between scrapes), and the
// format for it is a few lines; the tests read every exposition back with
// the client library's own parser and lint it with its promlint, so it
// cannot drift from what Prometheus accepts.
package promtext

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ContentType is the format's media type, as the client library sends it.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a metric family's type.
type Type string

// The types vmm uses.
const (
	Gauge   Type = "gauge"
	Counter Type = "counter"
)

// Desc describes a metric family: its name, help, type and label names.
type Desc struct {
	Name   string
	Help   string
	Type   Type
	Labels []string
}

// Check reports what in d the format cannot carry.
func (d *Desc) Check() error {
	if !validMetricName(d.Name) {
		return fmt.Errorf("metric name %q: want [a-zA-Z_:][a-zA-Z0-9_:]*", d.Name)
	}
	if d.Type != Gauge && d.Type != Counter {
		return fmt.Errorf("metric %s: type %q, want gauge or counter", d.Name, d.Type)
	}
	for i, l := range d.Labels {
		if !validLabelName(l) || strings.HasPrefix(l, "__") {
			return fmt.Errorf("metric %s: label name %q: want [a-zA-Z_][a-zA-Z0-9_]* not starting with __", d.Name, l)
		}
		if slices.Contains(d.Labels[:i], l) {
			return fmt.Errorf("metric %s: label %q twice", d.Name, l)
		}
	}
	return nil
}

// Set gathers the samples of one exposition. The zero Set is empty and
// ready. A sample that does not fit its Desc (an invalid Desc, the wrong
// number of label values, the same label values twice) is left out and
// remembered: Err reports the first; the rest of the set is still written,
// as the client library still serves what it could gather.
type Set struct {
	fams  []*family
	index map[*Desc]*family
	err   error
}

type family struct {
	desc    *Desc
	samples []sample
	seen    map[string]bool // the samples' label values, joined
}

type sample struct {
	values []string
	value  float64
}

// Add records a sample of d with the label values of d.Labels, in order.
func (s *Set) Add(d *Desc, v float64, labelValues ...string) {
	f := s.index[d]
	if f == nil {
		if err := d.Check(); err != nil {
			s.fail(err)
			return
		}
		if s.index == nil {
			s.index = map[*Desc]*family{}
		}
		f = &family{desc: d, seen: map[string]bool{}}
		s.index[d] = f
		s.fams = append(s.fams, f)
	}
	if len(labelValues) != len(d.Labels) {
		s.fail(fmt.Errorf("metric %s: %d label values for the labels %v", d.Name, len(labelValues), d.Labels))
		return
	}
	key := strings.Join(labelValues, "\xff")
	if f.seen[key] {
		s.fail(fmt.Errorf("metric %s: the labels %v = %q twice", d.Name, d.Labels, labelValues))
		return
	}
	f.seen[key] = true
	f.samples = append(f.samples, sample{values: slices.Clone(labelValues), value: v})
}

func (s *Set) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// Err is the first sample left out, nil when there was none.
func (s *Set) Err() error { return s.err }

// WriteTo writes the set: families sorted by name, each with its HELP and
// TYPE lines and its samples, labels sorted by name and samples by their
// label values in that order (the client library's order, so two scrapes
// of the same state are the same bytes).
// A family with no samples is not written.
func (s *Set) WriteTo(w io.Writer) (int64, error) {
	fams := slices.Clone(s.fams)
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.desc.Name, b.desc.Name) })
	cw := &countWriter{w: w}
	bw := bufio.NewWriter(cw)
	for _, f := range fams {
		d := f.desc
		bw.WriteString("# HELP " + d.Name + " " + escapeHelp(d.Help) + "\n")
		bw.WriteString("# TYPE " + d.Name + " " + string(d.Type) + "\n")
		order := make([]int, len(d.Labels)) // the labels sorted by name, as the client library writes them
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(d.Labels[a], d.Labels[b]) })
		samples := slices.Clone(f.samples)
		slices.SortFunc(samples, func(a, b sample) int {
			for _, i := range order {
				if c := strings.Compare(a.values[i], b.values[i]); c != 0 {
					return c
				}
			}
			return 0
		})
		for _, sm := range samples {
			bw.WriteString(d.Name)
			if len(order) > 0 {
				bw.WriteByte('{')
				for n, i := range order {
					if n > 0 {
						bw.WriteByte(',')
					}
					bw.WriteString(d.Labels[i] + `="` + escapeLabelValue(sm.values[i]) + `"`)
				}
				bw.WriteByte('}')
			}
			bw.WriteString(" " + formatValue(sm.value) + "\n")
		}
	}
	err := bw.Flush()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// formatValue writes a float as the client library does: the shortest
// representation, and +Inf, -Inf, NaN by name.
func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// escapeHelp escapes a HELP text: backslash and newline.
func escapeHelp(s string) string { return escape(s, false) }

// escapeLabelValue escapes a label value: backslash, double quote, newline.
// Invalid UTF-8 is replaced: the format is UTF-8.
func escapeLabelValue(s string) string { return escape(strings.ToValidUTF8(s, "\uFFFD"), true) }

func escape(s string, quote bool) string {
	if !strings.ContainsAny(s, "\\\n\"") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func validMetricName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

func validLabelName(s string) bool {
	for i, c := range s {
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}
