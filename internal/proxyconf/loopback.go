package proxyconf

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
)

// The directives that name an address, as far as this check reads them:
// where the proxy listens (nginx listen, HAProxy bind) and where it sends
// (nginx proxy_pass, grpc_pass and an upstream block's server, HAProxy
// server). Other directives that could reach out (resolver, mirror, ...) are
// not read: the check catches the everyday ways out, it is not a parser.
var (
	nginxAddr   = regexp.MustCompile(`(?:^|[\s{;])(listen|server|proxy_pass|grpc_pass)\s+([^\s;]+)`)
	nginxUp     = regexp.MustCompile(`^\s*upstream\s+([^\s{]+)\s*\{`)
	haproxyAddr = regexp.MustCompile(`^\s*(bind|server)\s+(\S+)(?:\s+(\S+))?`)
)

// NotLoopback lists, with their lines (from 1), the addresses in a
// configuration of your own that are not on loopback: a listen or bind on
// every interface (":8080", "*:8080", "0.0.0.0:8080", a port alone), or a
// server or proxy_pass naming another host. The proxy runs on the host's
// network, so either would take traffic off 127.0.0.0/8, which cascade
// does only when told to (--allow-remote). Placeholders are cascade's own
// loopback addresses, so {{listen}} and {{servers}} pass; {{port}} alone
// after listen or bind does not (every interface).
func NotLoopback(kind, text string) []string {
	lines := strings.Split(text, "\n")
	upstreams := map[string]bool{} // nginx upstream block names, which proxy_pass may name
	if kind == Nginx {
		for _, l := range lines {
			if m := nginxUp.FindStringSubmatch(stripComment(l)); m != nil {
				upstreams[m[1]] = true
			}
		}
	}
	var out []string
	for i, l := range lines {
		l = stripComment(l)
		var found [][2]string // directive, address
		switch kind {
		case Nginx:
			for _, m := range nginxAddr.FindAllStringSubmatch(l, -1) {
				if m[1] == "server" && m[2] == "{" {
					continue // a server block, not an upstream's server line
				}
				found = append(found, [2]string{m[1], m[2]})
			}
		case HAProxy:
			if m := haproxyAddr.FindStringSubmatch(l); m != nil {
				addr := m[2]
				if m[1] == "server" {
					addr = m[3] // server NAME ADDRESS
				}
				found = append(found, [2]string{m[1], addr})
			}
		}
		for _, f := range found {
			if why := addrProblem(f[0], f[1], upstreams); why != "" {
				out = append(out, fmt.Sprintf("line %d: %s %s %s", i+1, f[0], f[1], why))
			}
		}
	}
	return out
}

func stripComment(l string) string {
	if i := strings.IndexByte(l, '#'); i >= 0 {
		return l[:i]
	}
	return l
}

// addrProblem says what is wrong with one directive's address, "" when it
// is on loopback (or cascade's own placeholder).
func addrProblem(directive, addr string, upstreams map[string]bool) string {
	if addr == "" || strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "/") {
		return ""
	}
	listening := directive == "listen" || directive == "bind"
	if strings.HasPrefix(addr, "{{") && !strings.HasPrefix(strings.ReplaceAll(addr, " ", ""), "{{port}}") {
		return "" // {{listen}}, {{addrs}}, {{servers}}: cascade fills in loopback
	}
	if directive == "proxy_pass" || directive == "grpc_pass" {
		// http://host:port/path, host possibly an upstream block's name.
		if _, rest, ok := strings.Cut(addr, "://"); ok {
			addr = rest
		}
		if strings.HasPrefix(addr, "unix:") {
			return ""
		}
		if i := strings.IndexByte(addr, '/'); i >= 0 {
			addr = addr[:i]
		}
		if upstreams[addr] {
			return ""
		}
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else if listening && !strings.Contains(addr, ".") && !strings.Contains(addr, "[") {
		host = "" // nginx's "listen 8080" or "listen {{port}}": a port alone
	}
	if strings.Contains(host, "{{") {
		return "" // {{listen}}, {{addrs}}: cascade fills in loopback
	}
	switch {
	case host == "" || host == "*" || host == "0.0.0.0" || host == "::" || host == "[::]":
		if listening {
			return "listens on every interface: write 127.0.0.1:PORT (or {{listen}})"
		}
		return "names no host"
	case host == "localhost":
		return ""
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if ip.IsLoopback() {
			return ""
		}
		return "is not a loopback address"
	}
	return "names a host cascade cannot tell is on loopback: use an address in 127.0.0.0/8 (or {{servers}})"
}
