package proxyconf

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	for text, want := range map[string]string{
		"bind {{listen}}\n{{ servers }}\n": "",
		"nothing to fill\n":                "",
		"a\nb {{listen}} {{serverz}}\n":    "line 2: unknown placeholder {{serverz}}",
		"a {{ listen\n":                    `line 1: unknown placeholder "{{ listen"`,
		"{{}}":                             "line 1: unknown placeholder {{}}",
		"{{servers check inter 1s}}":       "",
		"{{ timeout }}":                    "",
		"{{listen 80}}":                    "line 1: unknown placeholder: {{listen}} takes no parameters",
	} {
		err := Check(text)
		if want == "" {
			if err != nil {
				t.Errorf("Check(%q) = %v", text, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrPlaceholder) || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want %q", text, err, want)
		}
	}
}

// Each placeholder renders in the proxy's own syntax; a multi-line one
// keeps the indentation of the line it stands on.
func TestRender(t *testing.T) {
	v := Values{Kind: HAProxy, Port: 18080, Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Timeout: 1500 * time.Millisecond, Ready: "/up"}
	got, err := Render("frontend fe\n    bind {{listen}}\n    monitor-uri {{ready}}\n    timeout server {{timeout}}\nbackend be\n    {{servers}}\n# {{port}} {{addrs}}\n", v)
	if err != nil {
		t.Fatal(err)
	}
	want := "frontend fe\n    bind 127.0.0.1:18080\n    monitor-uri /up\n    timeout server 1500ms\nbackend be\n    server u0 127.0.0.1:1\n    server u1 127.0.0.1:2\n# 18080 127.0.0.1:1 127.0.0.1:2\n"
	if got != want {
		t.Errorf("haproxy:\n%s\nwant:\n%s", got, want)
	}
	v.Kind = Nginx
	got, err = Render("upstream u {\n\t{{ servers max_fails=0 }}\n}\n", v)
	if err != nil || got != "upstream u {\n\tserver 127.0.0.1:1 max_fails=0;\n\tserver 127.0.0.1:2 max_fails=0;\n}\n" {
		t.Errorf("nginx: %q, %v", got, err)
	}
	if _, err := Render("{{nope}}", v); !errors.Is(err, ErrPlaceholder) {
		t.Errorf("unknown placeholder rendered: %v", err)
	}
}

// A configuration of your own may not take the proxy off loopback: every
// interface to listen on, or another host to send to, is named with its
// line; cascade's own placeholders, loopback addresses, sockets and
// nginx's upstream names pass.
func TestNotLoopback(t *testing.T) {
	nginx := `# listen 0.0.0.0:80 in a comment is fine
upstream api { {{servers max_fails=0}} server 127.0.0.2:9001; }
server {
    listen {{listen}};
    listen 127.0.0.1:{{port}};
    listen 8080;
    listen [::]:8081;
    listen *:8082;
    location / { proxy_pass http://api; }
    location /x { proxy_pass http://10.1.2.3:80/x; }
    location /y { proxy_pass http://example.com; }
    location /z { proxy_pass http://[::1]:9000; }
    location /s { proxy_pass http://unix:/tmp/s.sock; }
}
server {
    listen {{port}};
    server_name localhost;
}
`
	want := []string{
		"line 6: listen 8080 listens on every interface",
		"line 7: listen [::]:8081 listens on every interface",
		"line 8: listen *:8082 listens on every interface",
		"line 10: proxy_pass http://10.1.2.3:80/x is not a loopback address",
		"line 11: proxy_pass http://example.com names a host cascade cannot tell",
		"line 16: listen {{port}} listens on every interface",
	}
	checkProblems(t, NotLoopback(Nginx, nginx), want)

	haproxy := `frontend fe
    bind {{listen}}
    bind :{{port}}
    bind 0.0.0.0:8443
    bind 127.0.0.1:9000
backend be
    {{servers check}}
    server a 127.0.0.1:9001 check
    server b 192.168.7.7:80 check
    server c db.internal:5432
`
	want = []string{
		"line 3: bind :{{port}} listens on every interface",
		"line 4: bind 0.0.0.0:8443 listens on every interface",
		"line 9: server 192.168.7.7:80 is not a loopback address",
		"line 10: server db.internal:5432 names a host cascade cannot tell",
	}
	checkProblems(t, NotLoopback(HAProxy, haproxy), want)
}

func checkProblems(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %q, want it to start %q", i, got[i], want[i])
		}
	}
}
