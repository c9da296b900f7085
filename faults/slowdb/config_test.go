package slowdb

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

type scenarioFile struct {
	Upstreams []struct {
		Name     string `yaml:"name"`
		Kind     string `yaml:"kind"`
		Database Config `yaml:"database"`
	} `yaml:"upstreams"`
}

func TestConfigDecode(t *testing.T) {
	src := `upstreams:
  - name: orders
    kind: database
    database: {driver: postgres, dsn: "postgres://u@127.0.0.1:5432/db", pool_size: 10, statement_timeout: 500ms, upstream_timeout: 2s}
`
	var f scenarioFile
	if _, err := yamlfile.Decode("s.yaml", []byte(src), &f); err != nil {
		t.Fatal(err)
	}
	c := f.Upstreams[0].Database
	want := Config{Driver: Postgres, DSN: "postgres://u@127.0.0.1:5432/db", PoolSize: 10,
		StatementTimeout: units.Duration(500 * time.Millisecond), UpstreamTimeout: units.Duration(2 * time.Second)}
	if c != want {
		t.Fatalf("got %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := c.WithDefaults()
	if d.LockTimeout.D() != 250*time.Millisecond || d.Customers != DefaultCustomers || d.SampleInterval.D() != DefaultSampleInterval {
		t.Fatalf("defaults: %+v", d)
	}
	if z := (Config{}).WithDefaults(); z.Driver != SQLite || z.PoolSize != DefaultPoolSize || z.UpstreamTimeout.D() != DefaultUpstreamTimeout {
		t.Fatalf("zero defaults: %+v", z)
	}

	for _, bad := range []struct{ src, want string }{
		{"upstreams: [{database: {statement_timeout: 500}}]", "s.yaml:1:"},
		{"upstreams: [{database: {pool_sise: 3}}]", "pool_sise"},
	} {
		var f scenarioFile
		_, err := yamlfile.Decode("s.yaml", []byte(bad.src), &f)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("%s: got %v, want it to mention %q", bad.src, err, bad.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c     Config
		field string
	}{
		{Config{Driver: "mysql"}, "driver"},
		{Config{Driver: Postgres}, "dsn"},
		{Config{PoolSize: -1}, "pool_size"},
		{Config{Customers: 1_000_000, OrdersPerCustomer: 1000}, "customers"},
		{Config{LockTimeout: units.Duration(time.Microsecond)}, "lock_timeout"},
		{Config{SampleInterval: units.Duration(time.Microsecond)}, "sample_interval"},
		{Config{DSN: "/tmp/orders.db?mode=ro"}, "dsn"},
		{Config{DSN: filepath.Join(t.TempDir(), "no-such-dir", "orders.db")}, "dsn"},
	} {
		err := tc.c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: got %v, want a FieldError on %s", tc.c, err, tc.field)
		}
	}
}

// A lock timeout below 1ms that comes from the default (half the statement
// timeout) says so, instead of blaming a field the file does not have.
func TestConfigValidateDerivedLockTimeout(t *testing.T) {
	err := Config{StatementTimeout: units.Duration(1500 * time.Microsecond)}.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "lock_timeout" || !strings.Contains(fe.Msg, "half the statement_timeout") {
		t.Fatalf("got %v, want lock_timeout's error to say it is half the statement_timeout", err)
	}
	if err := (Config{DSN: filepath.Join(t.TempDir(), "orders.db")}).Validate(); err != nil {
		t.Fatalf("a file in an existing directory: %v", err)
	}
}

func TestFaultDecode(t *testing.T) {
	f, err := NewFault(KindSlowQuery)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := yamlfile.Decode("f.yaml", []byte("{latency: {dist: lognormal, p50: 20ms, p99: 200ms}, probability: 50%}"), f); err != nil {
		t.Fatal(err)
	}
	sq := f.(*SlowQuery)
	if sq.Latency.Dist != dist.LogNormal || sq.Probability != 0.5 || sq.Validate() != nil {
		t.Fatalf("%+v", sq)
	}
	lc, _ := NewFault(KindLockContention)
	if _, err := yamlfile.Decode("f.yaml", []byte("{hold: 2s, share: 10%}"), lc); err != nil {
		t.Fatal(err)
	}
	if got := lc.(*LockContention); got.Hold.D() != 2*time.Second || got.Share != 0.1 {
		t.Fatalf("%+v", got)
	}
	if _, err := NewFault("slow"); !errors.Is(err, ErrUnknownFault) || !strings.Contains(err.Error(), "pool_exhaustion") {
		t.Fatalf("unknown kind: %v", err)
	}
	for _, bad := range []Fault{&SlowQuery{}, &StatementTimeout{}, &PoolExhaustion{Hold: -1}} {
		if bad.Validate() == nil {
			t.Errorf("%T%+v passed Validate", bad, bad)
		}
	}
	if got := Kinds(); len(got) != 5 || got[0] != KindConnectionRefused {
		t.Fatalf("kinds %v", got)
	}
}

// The share of slowed requests follows the probability, and the same seed
// slows the same requests.
func TestSlowProbabilityRepeats(t *testing.T) {
	run := func() []time.Duration {
		rng := rand.New(rand.NewPCG(3, 4))
		s := &slowFault{rng: rng, sampler: dist.NewSampler(dist.FixedLatency(time.Millisecond), rng), prob: 0.3}
		out := make([]time.Duration, 2000)
		for i := range out {
			out[i] = s.draw()
		}
		return out
	}
	a, b := run(), run()
	n := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d differs between runs with one seed", i)
		}
		if a[i] > 0 {
			n++
		}
	}
	if n < 500 || n > 700 {
		t.Fatalf("%d of 2000 slowed at 30%%", n)
	}
}
