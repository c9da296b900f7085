package loadgen

// NewTransport returns the transport for cfg's protocol and target. Until
// loadgen/h1 lands on this branch, every target goes through net/http.
func NewTransport(cfg Config) (Transport, error) {
	return NewHTTPTransport(cfg)
}
