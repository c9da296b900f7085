package slowdb

import (
	"context"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// CheckLocal refuses a postgres DSN that would connect anywhere but this
// machine's loopback: every host it names (fallbacks included, and the
// PGHOST a DSN without a host takes from the environment) must be a
// loopback address, localhost, or a Unix socket directory. The upstream
// creates a schema and drops tables where it connects, so a DSN is a
// target like any other.
func CheckLocal(dsn string) error {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return &FieldError{Field: "dsn", Msg: err.Error()}
	}
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if !localHost(h) {
			return &FieldError{Field: "dsn", Msg: fmt.Sprintf("host %s is not a loopback address: cascade connects only to 127.0.0.0/8 (or a Unix socket) unless you pass --allow-remote", h)}
		}
	}
	return nil
}

func localHost(h string) bool {
	if len(h) > 0 && h[0] == '/' {
		return true // a Unix socket directory
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// loopbackDial dials only loopback addresses and Unix sockets: what
// CheckLocal allowed, checked again where the connection is made, after
// the name was resolved.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "unix" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("slowdb: %s is not a loopback address: cascade connects only to 127.0.0.0/8 unless you pass --allow-remote", host)
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
