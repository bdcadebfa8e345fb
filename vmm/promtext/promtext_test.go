package promtext

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	up        = &Desc{Name: "berth_up", Help: "1 when up.", Type: Gauge}
	diskBytes = &Desc{Name: "berth_block_bytes_total", Help: "Bytes per disk and op: a \\ and a\nnewline.", Type: Counter, Labels: []string{"op", "disk"}}
)

func TestWriteTo(t *testing.T) {
	var s Set
	s.Add(diskBytes, 4096, "write", "root")
	s.Add(up, 1)
	s.Add(diskBytes, 1.5e12, "read", "root")
	s.Add(diskBytes, 7, "read\n", `da"ta\`)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	n, err := s.WriteTo(&b)
	if err != nil || n != int64(b.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d", n, err, b.Len())
	}
	want := `# HELP berth_block_bytes_total Bytes per disk and op: a \\ and a\nnewline.
# TYPE berth_block_bytes_total counter
berth_block_bytes_total{disk="da\"ta\\",op="read\n"} 7
berth_block_bytes_total{disk="root",op="read"} 1.5e+12
berth_block_bytes_total{disk="root",op="write"} 4096
# HELP berth_up 1 when up.
# TYPE berth_up gauge
berth_up 1
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	mfs := parse(t, b.String())
	if got := mfs["berth_block_bytes_total"].GetMetric()[0].GetLabel()[0].GetValue(); got != `da"ta\` {
		t.Errorf("the escaped label value reads back as %q", got)
	}
	if got := mfs["berth_block_bytes_total"].GetHelp(); got != diskBytes.Help {
		t.Errorf("the escaped help reads back as %q", got)
	}
	lint(t, b.Bytes())
}

// TestLeftOut: samples that do not fit are left out and reported, the rest
// is written.
func TestLeftOut(t *testing.T) {
	for _, tt := range []struct {
		name string
		add  func(*Set)
		err  string
	}{
		{"too few label values", func(s *Set) { s.Add(diskBytes, 1, "root") }, "1 label values"},
		{"the same labels twice", func(s *Set) { s.Add(diskBytes, 1, "a", "b"); s.Add(diskBytes, 2, "a", "b") }, "twice"},
		{"a bad metric name", func(s *Set) { s.Add(&Desc{Name: "berth-up", Type: Gauge}, 1) }, "metric name"},
		{"a name starting with a digit", func(s *Set) { s.Add(&Desc{Name: "1up", Type: Gauge}, 1) }, "metric name"},
		{"no type", func(s *Set) { s.Add(&Desc{Name: "berth_x"}, 1) }, "type"},
		{"a bad label name", func(s *Set) { s.Add(&Desc{Name: "berth_x", Type: Gauge, Labels: []string{"a:b"}}, 1, "v") }, "label name"},
		{"a reserved label name", func(s *Set) { s.Add(&Desc{Name: "berth_x", Type: Gauge, Labels: []string{"__name__"}}, 1, "v") }, "label name"},
		{"a label twice", func(s *Set) { s.Add(&Desc{Name: "berth_x", Type: Gauge, Labels: []string{"a", "a"}}, 1, "v", "w") }, "twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s Set
			s.Add(up, 1)
			tt.add(&s)
			if err := s.Err(); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Err() = %v, want one saying %q", err, tt.err)
			}
			var b bytes.Buffer
			if _, err := s.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			mfs := parse(t, b.String())
			if mfs["berth_up"] == nil {
				t.Errorf("the good sample is missing:\n%s", b.String())
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	var s Set
	var b bytes.Buffer
	if n, err := s.WriteTo(&b); n != 0 || err != nil {
		t.Errorf("an empty set wrote %d bytes, %v", n, err)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1: "1", 0.1: "0.1", -2.5: "-2.5", 1 << 40: "1.099511627776e+12",
		math.Inf(1): "+Inf", math.Inf(-1): "-Inf", math.NaN(): "NaN"} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

// FuzzRoundTrip: whatever the label value and the number, the client
// library's parser reads back the same.
func FuzzRoundTrip(f *testing.F) {
	f.Add("root", 1.5)
	f.Add("a\"b\\c\nd", -1e300)
	f.Add("\xff\xfe", math.Inf(1))
	f.Add("", 0.0)
	f.Fuzz(func(t *testing.T, label string, v float64) {
		d := &Desc{Name: "berth_fuzz", Help: "fuzz", Type: Gauge, Labels: []string{"l"}}
		var s Set
		s.Add(d, v, label)
		var b bytes.Buffer
		if _, err := s.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		mfs := parse(t, b.String())
		m := mfs["berth_fuzz"].GetMetric()
		if len(m) != 1 {
			t.Fatalf("%d samples read back from\n%s", len(m), b.String())
		}
		if got, want := m[0].GetLabel()[0].GetValue(), strings.ToValidUTF8(label, "\uFFFD"); got != want {
			t.Errorf("label %q read back as %q", want, got)
		}
		got := m[0].GetGauge().GetValue()
		if got != v && !(math.IsNaN(got) && math.IsNaN(v)) {
			t.Errorf("value %v read back as %v", v, got)
		}
	})
}

// parse reads an exposition with the client library's parser.
func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the client library cannot parse\n%s\n%v", text, err)
	}
	return mfs
}

// lint checks an exposition with the client library's promlint (naming and
// help conventions).
func lint(t *testing.T, text []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
