package gameday

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Headers the CLI sends.
const (
	HeaderWho    = "X-Cascade-Who"    // who acts: the journal records it
	HeaderSource = "X-Cascade-Source" // labels a fault document's errors, as a file name does
	cookieName   = "cascade_token"
	maxBody      = 64 << 10
)

// Control is control.json: how a CLI verb reaches a live run.
type Control struct {
	URL       string `json:"url"`
	Token     string `json:"token"`
	Dashboard string `json:"dashboard"`
	PID       int    `json:"pid"`
	Scenario  string `json:"scenario"`
	Dir       string `json:"dir"`
}

// server is the control API and the dashboard, on loopback.
type server struct {
	s       *Session
	ln      net.Listener
	srv     *http.Server
	token   string
	sum     [32]byte
	ctlPath string
	served  chan struct{}
	started bool
}

// CheckLoopback refuses any address that is not a loopback IP: the
// control API changes what a run does and must not face a network (and a
// client must not send its token anywhere else).
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("control address %q: expected host:port such as 127.0.0.1:0", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("control address %q: the control API and the dashboard bind a loopback address only (127.0.0.1)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("control address %q: port must be 0-65535", addr)
	}
	return nil
}

// CheckListen is CheckLoopback for the address the control API listens
// on: a fixed port must also stay out of the range the load generator's
// own sockets take.
func CheckListen(addr string) error {
	if err := CheckLoopback(addr); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	if n, _ := strconv.Atoi(port); n >= 32768 && n <= 60999 {
		return fmt.Errorf("control address %q: port %d is in the ephemeral range (32768-60999) where the load generator's own sockets can collide with it; use 0 (any free port) or a port below 32768", addr, n)
	}
	return nil
}

// newToken draws the API token. It comes from crypto/rand, not from the
// scenario's seed: it is a secret, and a run must not repeat it.
func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func newServer(s *Session, listen string) (*server, error) {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if err := CheckListen(listen); err != nil {
		return nil, err
	}
	tok, err := newToken()
	if err != nil {
		return nil, fmt.Errorf("control API token: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("control API: %w", err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("control API: bound %s, which is not loopback", ln.Addr())
	}
	v := &server{s: s, ln: ln, token: tok, sum: sha256.Sum256([]byte(tok)), ctlPath: filepath.Join(s.cfg.Dir, ControlFile),
		served: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", v.dashboard)
	mux.HandleFunc("GET /v1/status", v.api(v.status))
	mux.HandleFunc("GET /v1/faults", v.api(v.listFaults))
	mux.HandleFunc("POST /v1/faults", v.api(v.addFault))
	mux.HandleFunc("DELETE /v1/faults/{name}", v.api(v.removeFault))
	mux.HandleFunc("POST /v1/phase/next", v.api(v.nextPhase))
	mux.HandleFunc("POST /v1/stop", v.api(v.stop))
	mux.HandleFunc("GET /v1/journal", v.api(v.journal))
	mux.HandleFunc("GET /v1/stream", v.streamHandler)
	v.srv = &http.Server{Handler: v.guard(mux), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return context.Background() }}
	return v, nil
}

func (v *server) url() string { return "http://" + v.ln.Addr().String() }

// start writes control.json (0600: it holds the token) and serves.
func (v *server) start() error {
	c := Control{URL: v.url(), Token: v.token, Dashboard: v.url() + "/?token=" + v.token, PID: os.Getpid(),
		Scenario: v.s.p.Name, Dir: v.s.cfg.Dir}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	// A file left by a game day that was killed in this directory is
	// stale: replace it, never write a token into a file others can read.
	if err := os.Remove(v.ctlPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control file: %w", err)
	}
	f, err := os.OpenFile(v.ctlPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("control file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	v.started = true
	go func() {
		defer close(v.served)
		_ = v.srv.Serve(v.ln) // ErrServerClosed after close
	}()
	return nil
}

// close stops serving (open dashboard streams are told the run ended
// first) and removes control.json: the token is of no use any more.
func (v *server) close() error {
	var err error
	if v.started {
		if v.s.stream != nil {
			v.s.stream.end()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err = v.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			err = v.srv.Close()
		}
		<-v.served
	} else {
		v.ln.Close()
	}
	if rerr := os.Remove(v.ctlPath); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// guard refuses requests addressed to another host name (DNS rebinding:
// a web page cannot reach the API through a name it controls) and
// cross-origin writes.
func (v *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, port, err := net.SplitHostPort(r.Host)
		_, myPort, _ := net.SplitHostPort(v.ln.Addr().String())
		if err != nil || port != myPort || (host != "localhost" && !isLoopbackIP(host)) {
			writeError(w, http.StatusForbidden, fmt.Errorf("host %q: the control API answers only on loopback", r.Host))
			return
		}
		if o := r.Header.Get("Origin"); o != "" && r.Method != http.MethodGet && o != "http://"+r.Host {
			writeError(w, http.StatusForbidden, fmt.Errorf("cross-origin request from %s refused", o))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopbackIP(h string) bool {
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// authorized checks the token in constant time (hashes of equal length are
// compared, so not even the length leaks). Writes carry it as a bearer
// token; the dashboard's reads may use the cookie set at login.
func (v *server) authorized(r *http.Request, cookieOK bool) (bool, string) {
	var given string
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return false, "the Authorization header must be \"Bearer <token>\""
		}
		given = strings.TrimSpace(t)
	} else if c, err := r.Cookie(cookieName); err == nil && cookieOK {
		given = c.Value
	}
	if given == "" {
		return false, "missing token: send Authorization: Bearer <token> (printed when the run started, and in the run directory's control.json)"
	}
	sum := sha256.Sum256([]byte(given))
	if subtle.ConstantTimeCompare(sum[:], v.sum[:]) != 1 {
		return false, "wrong token"
	}
	return true, ""
}

type handler func(w http.ResponseWriter, r *http.Request, who string) (any, int, error)

// api wraps an API endpoint: token, who, JSON answer.
func (v *server) api(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, why := v.authorized(r, r.Method == http.MethodGet); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cascade"`)
			writeError(w, http.StatusUnauthorized, errors.New(why))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		out, code, err := h(w, r, who(r))
		if err != nil {
			var ae *ActionError
			if errors.As(err, &ae) {
				code = ae.Status
			}
			if code == 0 {
				code = http.StatusInternalServerError
			}
			writeError(w, code, err)
			return
		}
		if code == 0 {
			code = http.StatusOK
		}
		writeJSON(w, code, out)
	}
}

// who reads the acting person from the request: printable, at most 64
// characters; "unknown" when absent.
func who(r *http.Request) string {
	w := strings.TrimSpace(r.Header.Get(HeaderWho))
	w = strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) {
			return c
		}
		return -1
	}, w)
	if r := []rune(w); len(r) > 64 {
		w = string(r[:64])
	}
	if w == "" {
		return "unknown"
	}
	return w
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// APIError is the body of every refused request.
type APIError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, APIError{Error: err.Error()})
}

func (v *server) status(w http.ResponseWriter, r *http.Request, _ string) (any, int, error) {
	return v.s.Status(), 0, nil
}

func (v *server) listFaults(w http.ResponseWriter, r *http.Request, _ string) (any, int, error) {
	fs := v.s.Faults()
	if fs == nil {
		fs = []FaultStatus{}
	}
	return fs, 0, nil
}

func (v *server) journal(w http.ResponseWriter, r *http.Request, _ string) (any, int, error) {
	es := v.s.journal.Entries()
	if es == nil {
		es = []Entry{}
	}
	return es, 0, nil
}

// Added answers POST /v1/faults.
type Added struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	T      float64 `json:"t"` // run clock when it started
}

func (v *server) addFault(w http.ResponseWriter, r *http.Request, who string) (any, int, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the fault document is over %d bytes", maxBody)
		}
		return nil, http.StatusBadRequest, err
	}
	source := sanitizeSource(r.Header.Get(HeaderSource))
	e, err := v.s.AddFault(who, source, body)
	if err != nil {
		return nil, 0, err
	}
	return Added{Name: e.Name, Kind: e.Kind, Target: e.Target(), T: v.s.clock.Now().Seconds()}, http.StatusCreated, nil
}

func sanitizeSource(s string) string {
	s = strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) && c != ':' {
			return c
		}
		return -1
	}, s)
	if s == "" || len(s) > 200 {
		return "request"
	}
	return s
}

// Done answers the other actions.
type Done struct {
	OK    bool    `json:"ok"`
	T     float64 `json:"t"`
	Phase string  `json:"phase,omitempty"`
	Fault string  `json:"fault,omitempty"`
}

func (v *server) removeFault(w http.ResponseWriter, r *http.Request, who string) (any, int, error) {
	name := r.PathValue("name")
	if err := v.s.RemoveFault(who, name); err != nil {
		return nil, 0, err
	}
	return Done{OK: true, T: v.s.clock.Now().Seconds(), Fault: name}, 0, nil
}

func (v *server) nextPhase(w http.ResponseWriter, r *http.Request, who string) (any, int, error) {
	name, opened, err := v.s.NextPhase(who)
	if err != nil {
		return nil, 0, err
	}
	return Done{OK: true, T: opened.Seconds(), Phase: name}, 0, nil
}

func (v *server) stop(w http.ResponseWriter, r *http.Request, who string) (any, int, error) {
	if err := v.s.Stop(who); err != nil {
		return nil, 0, err
	}
	return Done{OK: true, T: v.s.clock.Now().Seconds()}, http.StatusAccepted, nil
}
