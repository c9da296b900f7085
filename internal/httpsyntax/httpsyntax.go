// Package httpsyntax holds the RFC 9110 byte-level rules that both of
// cascade's hand-written HTTP/1 parsers need: the gateway's fast path
// (gateway/wire.go) and the load generator's client (loadgen/h1). They
// parse different things in different ways, but a token, optional
// whitespace and a case-insensitive name are the same for both; written
// here once, allocation-free, small enough to inline.
package httpsyntax

// EqualFold reports whether b equals lower, a lower-case ASCII string,
// ignoring ASCII case in b.
func EqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// TrimOWS removes optional whitespace (spaces and tabs, RFC 9110 5.6.3)
// from both ends of b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// IsDigit reports whether c is an ASCII digit.
func IsDigit(c byte) bool { return '0' <= c && c <= '9' }

// TokenChar marks the bytes allowed in a token (RFC 9110 5.6.2, tchar).
var TokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// IsToken reports whether b is a non-empty token.
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !TokenChar[c] {
			return false
		}
	}
	return true
}
