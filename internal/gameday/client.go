package gameday

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// EnvRun names the run directory of the live run CLI verbs act on, when
// --run is not given.
const EnvRun = "CASCADE_RUN"

// Client talks to a live run's control API.
type Client struct {
	Control
	Who  string
	HTTP *http.Client
}

// HTTPError is a request the control API refused.
type HTTPError struct {
	Status int
	Msg    string
}

// Error is the API's reason and the status.
func (e *HTTPError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// ErrNoLiveRun means no control file was found.
var ErrNoLiveRun = errors.New("no live run found")

// FindRun picks the run directory a CLI verb acts on: dir if given, else
// $CASCADE_RUN, else the newest live run under ./cascade-results.
func FindRun(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(EnvRun)
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, ControlFile)); err != nil {
			return "", fmt.Errorf("%w in %s: no %s there (the run has ended, or it is not a game day)", ErrNoLiveRun, dir, ControlFile)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob(filepath.Join("cascade-results", "*", ControlFile))
	var best string
	var bestT time.Time
	for _, m := range matches {
		if c, err := readControl(filepath.Dir(m)); err != nil || !alive(c.PID) {
			continue // left by a game day that was killed
		}
		if fi, err := os.Stat(m); err == nil && fi.ModTime().After(bestT) {
			best, bestT = filepath.Dir(m), fi.ModTime()
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: give --run RUN_DIR or set %s (the run directory printed by cascade gameday)", ErrNoLiveRun, EnvRun)
	}
	return best, nil
}

func readControl(dir string) (Control, error) {
	var c Control
	b, err := os.ReadFile(filepath.Join(dir, ControlFile))
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrNoLiveRun, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", filepath.Join(dir, ControlFile), err)
	}
	return c, nil
}

// Dial reads dir's control file. The token is only ever sent to loopback:
// the address must be a loopback one, the client follows no redirect and
// uses no proxy, and a file whose game day is no longer running (killed
// before it could remove the file) is refused, so whatever listens on its
// port now never gets the token.
func Dial(dir, who string) (*Client, error) {
	c, err := readControl(dir)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, ControlFile)
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("%s: bad url %q", file, c.URL)
	}
	if err := CheckLoopback(u.Host); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if !alive(c.PID) {
		return nil, fmt.Errorf("%w in %s: the game day that wrote %s (pid %d) is no longer running; it was killed before it could remove the file (delete it)",
			ErrNoLiveRun, dir, ControlFile, c.PID)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	hc := &http.Client{Timeout: 10 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Client{Control: c, Who: who, HTTP: hc}, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set(HeaderWho, c.Who)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("the run's control API does not answer (has the run ended?): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e APIError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(bytes.TrimSpace(b))
		}
		return &HTTPError{Status: resp.StatusCode, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// AddFault sends a fault document (YAML or JSON); source labels its errors.
func (c *Client) AddFault(ctx context.Context, source string, doc []byte) (Added, error) {
	var a Added
	err := c.do(ctx, http.MethodPost, "/v1/faults", doc, map[string]string{"Content-Type": "application/yaml", HeaderSource: source}, &a)
	return a, err
}

// RemoveFault ends a fault now.
func (c *Client) RemoveFault(ctx context.Context, name string) (Done, error) {
	var d Done
	err := c.do(ctx, http.MethodDelete, "/v1/faults/"+url.PathEscape(name), nil, nil, &d)
	return d, err
}

// Faults lists the active faults.
func (c *Client) Faults(ctx context.Context) ([]FaultStatus, error) {
	var fs []FaultStatus
	err := c.do(ctx, http.MethodGet, "/v1/faults", nil, nil, &fs)
	return fs, err
}

// NextPhase opens the waiting gate.
func (c *Client) NextPhase(ctx context.Context) (Done, error) {
	var d Done
	err := c.do(ctx, http.MethodPost, "/v1/phase/next", nil, nil, &d)
	return d, err
}

// Stop ends the run gracefully.
func (c *Client) Stop(ctx context.Context) (Done, error) {
	var d Done
	err := c.do(ctx, http.MethodPost, "/v1/stop", nil, nil, &d)
	return d, err
}

// Status reads the run's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &s)
	return s, err
}
