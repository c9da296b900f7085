package main

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cascadehq/cascade/results"
)

// Requests that fail in the client say why: a self-signed certificate
// without --insecure is 100% transport_error, and the report and
// summary.json carry the error that says it is the certificate.
func TestLoadSaysWhyRequestsFailed(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // it logs every failed handshake
	srv.StartTLS()
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "run")
	code, out, errs := runCLI(context.Background(), "load", srv.URL+"/", "--rate", "20/s", "--duration", "500ms", "--out", dir, "--progress", "off")
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	const why = "x509: certificate signed by unknown authority"
	if !strings.Contains(out, "warning: the first transport_error: request \"GET /\" (sequence number ") || !strings.Contains(out, why) ||
		!strings.Contains(out, "transport_error[client] 10 (100.0%)") {
		t.Fatalf("the report does not say why every request failed:\n%s", out)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(r.Summary.Warnings, "\n"); !strings.Contains(w, why) {
		t.Fatalf("summary.json warnings %q lack the reason", w)
	}
}
