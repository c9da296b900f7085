package slowdb

import (
	"context"
	"strings"
	"testing"
)

// Where the connection is made, the resolved address is checked again: a
// name that passed as localhost but resolves elsewhere, or a DSN changed
// after the plan, is still refused before any packet leaves.
func TestLoopbackDialRefusesOtherHosts(t *testing.T) {
	for _, addr := range []string{"203.0.113.1:5432", "[2001:db8::1]:5432", "0.0.0.0:5432"} {
		c, err := loopbackDial(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
			t.Errorf("%s dialled", addr)
		} else if !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: %v", addr, err)
		}
	}
	// The whole backend refuses a remote DSN before dialling.
	_, err := openPostgres(context.Background(), "orders", Config{Driver: Postgres, DSN: "postgres://u@203.0.113.1:5432/db"}.WithDefaults(), nil)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("openPostgres with a remote DSN: %v", err)
	}
}
