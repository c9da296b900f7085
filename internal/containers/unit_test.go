package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckDaemonURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"unix:///var/run/docker.sock", true},
		{"tcp://127.0.0.1:2375", true},
		{"tcp://127.8.9.10:2375", true},
		{"tcp://localhost:2375", true},
		{"tcp://[::1]:2375", true},
		{"http://127.0.0.1:2375", true},
		{"tcp://10.0.0.5:2375", false},
		{"tcp://192.0.2.1:2376", false},
		{"tcp://docker.example:2375", false}, // names are not resolved
		{"ssh://user@127.0.0.1", false},
		{"npipe:////./pipe/docker_engine", false},
		{"::not a url", false},
	} {
		err := checkDaemonURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("checkDaemonURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("checkDaemonURL(%q) = %v, want ErrNotLoopback", tc.url, err)
		}
	}
	for _, h := range []string{"", "127.0.0.1", "localhost", "::1"} {
		if err := checkPublishedHost(h); err != nil {
			t.Errorf("checkPublishedHost(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"172.17.0.1", "10.1.2.3", "example.org"} {
		if err := checkPublishedHost(h); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("checkPublishedHost(%q) = %v, want ErrNotLoopback", h, err)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	good := Spec{Name: "up-0", Image: "cascade/x:1", Port: 20000, WaitHTTP: "/healthz"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for name, mutate := range map[string]func(*Spec){
		"empty name":      func(s *Spec) { s.Name = "" },
		"slash in name":   func(s *Spec) { s.Name = "a/b" },
		"no image":        func(s *Spec) { s.Image = "" },
		"ephemeral port":  func(s *Spec) { s.Port = 40000 },
		"negative port":   func(s *Spec) { s.Port = -1 },
		"wait no port":    func(s *Spec) { s.Port = 0 },
		"relative wait":   func(s *Spec) { s.WaitHTTP = "healthz" },
		"reserved label":  func(s *Spec) { s.Labels = map[string]string{"cascade.run": "x"} },
		"relative file":   func(s *Spec) { s.Files = []File{{Path: "etc/x"}} },
		"negative budget": func(s *Spec) { s.StartupTimeout = -time.Second },
	} {
		s := good
		mutate(&s)
		if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidSpec", name, err)
		}
	}
	if err := ValidateRunID(strings.Repeat("a", 64)); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("64-char run id accepted: %v", err)
	}
}

// TestRootfsFollowsSymlinks checks that files land under their real paths,
// with every symlink on the way recorded, as on a merged-/usr Debian.
func TestRootfsFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "usr/lib"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "usr/lib/libx.so.1.2"), []byte("real"), 0o644))
	must(os.Symlink("libx.so.1.2", filepath.Join(dir, "usr/lib/libx.so.1")))
	must(os.Symlink("usr/lib", filepath.Join(dir, "lib")))                    // relative dir link
	must(os.Symlink(filepath.Join(dir, "lib"), filepath.Join(dir, "abslib"))) // absolute link to a link
	must(os.Symlink("loop2", filepath.Join(dir, "loop1")))                    // a loop
	must(os.Symlink("loop1", filepath.Join(dir, "loop2")))

	r := newRootfs()
	must(r.addHost(filepath.Join(dir, "abslib/libx.so.1"), nil))
	want := map[string]byte{
		dir + "/abslib":              tar.TypeSymlink,
		dir + "/lib":                 tar.TypeSymlink,
		dir + "/usr/lib":             tar.TypeDir,
		dir + "/usr/lib/libx.so.1":   tar.TypeSymlink,
		dir + "/usr/lib/libx.so.1.2": tar.TypeReg,
	}
	for p, typ := range want {
		e, ok := r.entries[p]
		if !ok {
			t.Errorf("missing %s", p)
			continue
		}
		if e.typ != typ {
			t.Errorf("%s: type %c, want %c", p, e.typ, typ)
		}
	}
	if _, ok := r.entries[dir+"/lib/libx.so.1"]; ok {
		t.Errorf("file stored under a symlinked directory")
	}
	if err := r.addHost(filepath.Join(dir, "loop1"), nil); err == nil || !strings.Contains(err.Error(), "too many symlinks") {
		t.Errorf("symlink loop: err = %v", err)
	}

	// The tar holds parents before children and the file's bytes.
	must(r.addFile("/etc/passwd", []byte("root:x:0:0::/:/bin/sh\n"), 0o644, 0, 0))
	must(r.addDir("/var/lib/pg", 0o700, 999, 999))
	var buf bytes.Buffer
	must(r.writeTar(&buf))
	tr := tar.NewReader(&buf)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		name := strings.TrimSuffix(h.Name, "/")
		if parent := filepath.Dir(name); parent != "." && !seen[parent] {
			t.Errorf("%s before its parent %s", name, parent)
		}
		seen[name] = true
		switch name {
		case strings.TrimPrefix(dir, "/") + "/usr/lib/libx.so.1.2":
			b, _ := io.ReadAll(tr)
			if string(b) != "real" {
				t.Errorf("file content %q", b)
			}
		case "var/lib/pg":
			if h.Uid != 999 || h.Mode != 0o700 {
				t.Errorf("var/lib/pg uid %d mode %o", h.Uid, h.Mode)
			}
		}
	}
	// Same inputs, same hash; a changed synthetic file, another hash.
	h1 := r.hash("x")
	if h2 := r.hash("x"); h1 != h2 {
		t.Errorf("hash not stable: %s %s", h1, h2)
	}
	r.entries["/etc/passwd"].data = []byte("changed")
	if h3 := r.hash("x"); h3 == h1 {
		t.Errorf("hash ignores content of synthetic files")
	}
}

func TestLddFindsLibcAndLoader(t *testing.T) {
	libs, known, err := lddLibraries(context.Background(), []string{"/bin/sh"})
	if err != nil {
		t.Skipf("ldd unusable here: %v", err)
	}
	var libc, loader bool
	for _, l := range libs {
		libc = libc || strings.Contains(l, "libc.so")
		loader = loader || strings.Contains(l, "ld-linux")
	}
	if !known["libc.so.6"] {
		t.Errorf("ldd /bin/sh: libc.so.6 not among the resolved names %v", known)
	}
	if !libc || !loader {
		t.Errorf("ldd /bin/sh = %v: want libc and the loader", libs)
	}
}

func TestGatewayConfigs(t *testing.T) {
	s := GatewaySpec{Port: 21000, Upstreams: []string{"127.0.0.1:21001", "127.0.0.2:21002"}, UpstreamTimeout: 1500 * time.Millisecond}
	n, err := NginxConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen 127.0.0.1:21000;", "server 127.0.0.1:21001;", "server 127.0.0.2:21002;", "proxy_read_timeout 1500ms;", "location = /cascade-health"} {
		if !strings.Contains(n, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, n)
		}
	}
	h, err := HAProxyConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bind 127.0.0.1:21000", "server u0 127.0.0.1:21001", "server u1 127.0.0.2:21002", "timeout server 1500ms", "monitor-uri /cascade-health"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, h)
		}
	}
	for name, bad := range map[string]GatewaySpec{
		"remote upstream": {Port: 21000, Upstreams: []string{"10.0.0.1:80"}},
		"name upstream":   {Port: 21000, Upstreams: []string{"localhost:80"}},
		"no upstreams":    {Port: 21000},
		"no port":         {Upstreams: []string{"127.0.0.1:1"}},
		"ephemeral port":  {Port: 40000, Upstreams: []string{"127.0.0.1:1"}},
	} {
		if _, err := NginxConfig(bad); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: NginxConfig err = %v", name, err)
		}
		if _, err := HAProxyConfig(bad); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: HAProxyConfig err = %v", name, err)
		}
	}
}

// An interrupt while Connect waits for the daemon is an interrupt, not "no
// daemon": the user must not be sent off to start a dockerd that runs
// fine. The daemon here is a real socket that accepts and never answers
// (a daemon busy or stuck); Connect runs in a child process because
// testcontainers caches the daemon it found for the life of a process.
func TestConnectInterruptedIsNotNoDocker(t *testing.T) {
	if sock := os.Getenv("CASCADE_TEST_HUNG_DOCKER"); sock != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := Connect(ctx)
		switch {
		case errors.Is(err, ErrNoDocker):
			t.Fatalf("NO-DOCKER %v", err)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			t.Logf("INTERRUPTED %v", err)
		default:
			t.Fatalf("OTHER %v", err)
		}
		return
	}
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConnectInterruptedIsNotNoDocker$", "-test.v")
	cmd.Env = append(os.Environ(), "CASCADE_TEST_HUNG_DOCKER="+sock, "DOCKER_HOST=unix://"+sock)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "INTERRUPTED") {
		t.Fatalf("Connect to a daemon that never answers, interrupted: %v\n%s", err, out)
	}
}

// hungDaemon listens on a unix socket and holds every connection open
// without answering, the way a wedged dockerd looks.
func hungDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return sock
}

func TestConnectGivesUpOnAHungDaemon(t *testing.T) {
	defer func(d time.Duration) { connectTimeout = d }(connectTimeout)
	connectTimeout = 300 * time.Millisecond
	sock := hungDaemon(t)
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	start := time.Now()
	_, err := Connect(context.Background()) // no deadline of its own: Connect must bring one
	took := time.Since(start)
	if !errors.Is(err, ErrNoDocker) || !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("Connect to a daemon that never answers: err = %v, want ErrNoDocker and ErrNoAnswer", err)
	}
	if took > 5*time.Second {
		t.Errorf("Connect took %v to give up, want about %v", took, connectTimeout)
	}
	if !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Errorf("error %q does not name the socket and the wait", err)
	}
}

// A DOCKER_HOST nobody answers on must be reported, never replaced by
// another daemon testcontainers knows of (the default socket, a docker
// context): on a machine where one runs, the run went there without a word.
func TestConnectDoesNotFallBackToAnotherDaemon(t *testing.T) {
	stale := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the socket file stays, as a daemon that died leaves it
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	for _, host := range []string{"unix://" + stale, fmt.Sprintf("tcp://127.0.0.1:%d", port)} {
		t.Run(host, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", host)
			d, err := Connect(context.Background())
			if err == nil {
				defer d.Close()
				t.Fatalf("Connect with DOCKER_HOST=%s (nothing answers there) connected to %s", host, d.Host())
			}
			if !errors.Is(err, ErrNoDocker) || !strings.Contains(err.Error(), host) {
				t.Fatalf("err = %v, want ErrNoDocker naming %s", err, host)
			}
		})
	}
}

func TestSameDaemon(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"unix:///var/run/docker.sock", "unix:///var/run/docker.sock", true},
		{"unix:///var/run/docker.sock", "unix:///var/run/../run/docker.sock", true},
		{"unix:///var/run/docker.sock", "unix:///tmp/docker.sock", false},
		{"tcp://127.0.0.1:2375", "http://127.0.0.1:2375", true},
		{"tcp://127.0.0.1:2375", "tcp://127.0.0.1:2376", false},
		{"unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", false},
	} {
		if got := sameDaemon(tc.a, tc.b); got != tc.want {
			t.Errorf("sameDaemon(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// A gateway whose binary is not on this machine is refused before any
// Docker call, naming the package that installs it.
func TestGatewayNotInstalledNamesThePackage(t *testing.T) {
	for _, g := range []gatewayKind{nginxKind(), haproxyKind()} {
		g.binary = filepath.Join(t.TempDir(), "missing", g.kind)
		_, err := g.buildImage(context.Background(), nil) // no daemon needed to say so
		if !errors.Is(err, ErrGatewayNotInstalled) || !strings.Contains(err.Error(), "apt-get install -y --no-install-recommends "+g.kind) {
			t.Errorf("%s: err = %v", g.kind, err)
		}
	}
}
