package gameday

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
)

func writeControl(t *testing.T, c Control) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(dir, ControlFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The token goes to the control API's loopback address and nowhere else:
// a redirect is an answer, not a new destination.
func TestClientFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer api.Close()
	c, err := Dial(writeControl(t, Control{URL: api.URL, Token: "secret", PID: os.Getpid()}), "tester")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Status(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTemporaryRedirect {
		t.Errorf("status through a redirect: %v", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed: %d requests", n)
	}
}

// A control file left by a game day that was killed (kill -9 skips its
// removal) is not a live run: the verbs refuse it, and FindRun skips it.
func TestControlFileOfADeadRun(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	dead := cmd.Process.Pid
	dir := writeControl(t, Control{URL: "http://127.0.0.1:1", Token: "secret", PID: dead})
	if _, err := Dial(dir, "tester"); !errors.Is(err, ErrNoLiveRun) {
		t.Errorf("Dial of a dead run's control file: %v", err)
	}
	root := t.TempDir()
	t.Chdir(root)
	for name, pid := range map[string]int{"dead": dead, "live": os.Getpid()} {
		d := filepath.Join(root, "cascade-results", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(Control{URL: "http://127.0.0.1:1", PID: pid})
		if err := os.WriteFile(filepath.Join(d, ControlFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The dead one is newer, and still not chosen.
	now := filepath.Join(root, "cascade-results", "dead", ControlFile)
	fi, _ := os.Stat(now)
	_ = os.Chtimes(now, fi.ModTime().Add(1e9), fi.ModTime().Add(1e9))
	got, err := FindRun("")
	if err != nil || got != filepath.Join("cascade-results", "live") {
		t.Errorf("FindRun = %q, %v; want the live run", got, err)
	}
}
