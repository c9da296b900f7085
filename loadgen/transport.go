package loadgen

import "strings"

// NewTransport returns the transport for cfg's protocol and target:
// loadgen/h1 for HTTP/1.1 to an http:// target, net/http for the rest
// (TLS, HTTP/2, h2c) or when cfg.NetHTTP asks for it.
func NewTransport(cfg Config) (Transport, error) {
	if !cfg.NetHTTP && strings.HasPrefix(cfg.Target, "http://") && (cfg.Protocol == ProtoAuto || cfg.Protocol == ProtoHTTP1) {
		return NewH1Transport(cfg)
	}
	return NewHTTPTransport(cfg)
}
