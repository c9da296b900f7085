package h1_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen/h1"
)

// A pool shared by open-model workers: prepare the request once, reuse one
// Result per worker.
func ExamplePool() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Cascade-Cause", "fallback")
		fmt.Fprint(w, "cached answer")
	}))
	defer srv.Close()

	p, err := h1.Prepare(h1.Request{URL: srv.URL + "/api?id=1", Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	pool, err := h1.NewPool(p.Addr(), 8, h1.Options{Clock: event.NewClock()})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	r := h1.Result{Body: make([]byte, 0, 64)} // keep the first 64 body bytes
	if err := pool.Do(context.Background(), p, &r); err != nil {
		panic(err)
	}
	fmt.Println(r.Status, r.Cause, r.Cause.Layer(), string(r.Body))
	// Output: 200 fallback gateway cached answer
}
