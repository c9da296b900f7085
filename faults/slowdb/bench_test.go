package slowdb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// BenchmarkHandler measures the baseline request path on each database:
// "handler" is ServeHTTP (deadline, customer draw, the transaction, JSON);
// "db" is the database work alone, the peer that says what the handler adds.
func BenchmarkHandler(b *testing.B) {
	for _, driver := range []string{SQLite, Postgres} {
		b.Run(driver, func(b *testing.B) {
			cfg := Config{Driver: driver}
			if driver == Postgres {
				cfg.DSN = pgDSN(b)
			}
			u, err := New(context.Background(), "bench", cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer u.Close()
			b.Run("handler", func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "/orders", nil)
				lat := make([]time.Duration, 0, 1024)
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					t0 := time.Now()
					u.ServeHTTP(rec, req)
					lat = append(lat, time.Since(t0))
					if rec.Code != http.StatusOK {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			})
			b.Run("db", func(b *testing.B) {
				w := work{customer: 1, limit: u.cfg.HistoryLimit, stmtTimeout: u.cfg.StatementTimeout.D(), lockTimeout: u.cfg.LockTimeout.D()}
				b.ReportAllocs()
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					if _, err := u.b.history(ctx, &w); err != nil {
						b.Fatal(err)
					}
					cancel()
				}
			})
		})
	}
}
