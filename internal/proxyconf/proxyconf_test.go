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
