package slowdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/pgtest"
)

// sharedPG is one throwaway cluster for the whole package, started on first
// use (each test gets its own database in it): starting a cluster per test
// would cost a second of a shared machine each time.
var sharedPG struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedPG.srv != nil {
		if err := sharedPG.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// pgDSN returns a DSN for a fresh database for this test, or skips (fails
// with CASCADE_REQUIRE_POSTGRES=1) without PostgreSQL. The database is
// named after the test and dropped at its cleanup: the cluster lives as
// long as the test binary, and go test -count=2 runs each test again in it.
func pgDSN(t testing.TB) string {
	t.Helper()
	sharedPG.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sharedPG.srv, sharedPG.err = pgtest.Launch(ctx)
	})
	if errors.Is(sharedPG.err, pgtest.ErrUnavailable) && !pgtest.Required() {
		t.Skipf("%v; set %s=1 to make this a failure", sharedPG.err, pgtest.RequireEnv)
	}
	if sharedPG.err != nil {
		t.Fatal(sharedPG.err)
	}
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	name := fmt.Sprintf("t%08x", h.Sum32())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := sharedPG.srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the test's own cleanups, so it runs after them:
	// the upstream has closed its pool by then.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sharedPG.srv.DropDatabase(ctx, name); err != nil {
			t.Error(err)
		}
	})
	return dsn
}

// eachDriver runs f against SQLite and against PostgreSQL. cfg's Driver and
// DSN are filled in.
func eachDriver(t *testing.T, cfg Config, f func(t *testing.T, cfg Config)) {
	t.Run("sqlite", func(t *testing.T) {
		c := cfg
		c.Driver = SQLite
		f(t, c)
	})
	t.Run("postgres", func(t *testing.T) {
		c := cfg
		c.Driver, c.DSN = Postgres, pgDSN(t)
		f(t, c)
	})
}

type fixture struct {
	u      *Upstream
	url    string
	events *event.Memory
	srv    *httptest.Server
}

func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mem := &event.Memory{}
	u, err := New(ctx, "orders", cfg, WithSink(mem), WithRand(rand.New(rand.NewPCG(7, 11))))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u)
	t.Cleanup(func() {
		srv.Close() // waits for handlers still running (orphaned work)
		if err := u.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &fixture{u: u, url: srv.URL, events: mem, srv: srv}
}

type answer struct {
	status  int
	cause   string
	code    string
	stage   string
	elapsed time.Duration
	body    string
	err     error
}

// get sends one request; timeout is the client's own (0: 10s).
func (f *fixture) get(t *testing.T, query string, hdr map[string]string, timeout time.Duration) answer {
	t.Helper()
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/orders"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	begin := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err, elapsed: time.Since(begin)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{
		status: resp.StatusCode, cause: resp.Header.Get(cause.Header), code: resp.Header.Get(CodeHeader),
		stage: resp.Header.Get(StageHeader), elapsed: time.Since(begin), body: string(b), err: err,
	}
}

func (a answer) String() string {
	return fmt.Sprintf("status=%d cause=%s code=%s stage=%s elapsed=%v err=%v body=%.200q",
		a.status, a.cause, a.code, a.stage, a.elapsed.Round(time.Millisecond), a.err, strings.TrimSpace(a.body))
}

// ok asserts a successful answer with the customer's orders.
func (a answer) ok(t *testing.T, customer int64, orders int) {
	t.Helper()
	if a.err != nil || a.status != http.StatusOK || a.cause != "ok" {
		t.Fatalf("want 200 ok, got %v", a)
	}
	var r historyResponse
	if err := json.Unmarshal([]byte(a.body), &r); err != nil {
		t.Fatalf("body: %v: %s", err, a.body)
	}
	if customer != 0 && r.Customer != customer {
		t.Fatalf("customer %d, want %d", r.Customer, customer)
	}
	if len(r.Orders) != orders {
		t.Fatalf("%d orders, want %d", len(r.Orders), orders)
	}
	for i := 1; i < len(r.Orders); i++ {
		if r.Orders[i].CreatedAt.After(r.Orders[i-1].CreatedAt) {
			t.Fatalf("orders not newest first: %v", r.Orders)
		}
	}
}

// within asserts lo <= d <= hi: coarse bounds, the machine is shared.
func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	t.Logf("%s: %v", what, d.Round(100*time.Microsecond))
	if d < lo || d > hi {
		t.Fatalf("%s took %v, want within [%v, %v]", what, d.Round(time.Millisecond), lo, hi)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ofType(evs []event.Event, typ string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
