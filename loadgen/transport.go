//go:build !cascade_h1

package loadgen

// NewTransport returns the transport for cfg's protocol and target. Until
// loadgen/h1 is on main, every target goes through net/http; build with
// -tags cascade_h1 (and loadgen/h1 present) for the h1 client. When h1 lands:
// delete this file and the build lines of transport_h1.go, h1transport.go and
// h1transport_test.go.
func NewTransport(cfg Config) (Transport, error) {
	return NewHTTPTransport(cfg)
}
