package httpsyntax

import "testing"

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		b, lower string
		want     bool
	}{
		{"Content-Length", "content-length", true},
		{"CONTENT-LENGTH", "content-length", true},
		{"content-lengt", "content-length", false},
		{"Content-Lengthx", "content-length", false},
		{"Cont\xc5nt-Length", "content-length", false},
		{"", "", true},
	} {
		if got := EqualFold([]byte(tc.b), tc.lower); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v", tc.b, tc.lower, got)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{" \t a b \t": "a b", "x": "x", " \t ": "", "": "", "\r x": "\r x"} {
		if got := string(TrimOWS([]byte(in))); got != want {
			t.Errorf("TrimOWS(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsToken(t *testing.T) {
	for in, want := range map[string]bool{"GET": true, "X-Cascade-Seq": true, "!#$%&'*+-.^_`|~09azAZ": true,
		"": false, "a b": false, "a:b": false, "a\tb": false, "é": false, "(x)": false} {
		if got := IsToken([]byte(in)); got != want {
			t.Errorf("IsToken(%q) = %v", in, got)
		}
	}
	for c := 0; c < 256; c++ {
		if TokenChar[c] && (c <= ' ' || c >= 0x7f) {
			t.Errorf("TokenChar[%#x] is set", c)
		}
	}
}
