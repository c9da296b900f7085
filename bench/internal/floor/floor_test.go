package floor

import "testing"

func TestMessageEnd(t *testing.T) {
	for _, tc := range []struct {
		in       string
		response bool
		want     int
		err      bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", false, 27, false},
		{"GET / HTTP/1.1\r\nHost: x\r\n", false, 0, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, 43, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1", true, 43, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true, 0, false},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", true, 46, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true, 0, true},
	} {
		got, err := MessageEnd([]byte(tc.in), tc.response)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%q: %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestLoopback(t *testing.T) {
	for in, ok := range map[string]bool{
		"127.0.0.1:80": true, "127.9.8.7:1": true,
		"192.0.2.1:80": false, "[::1]:80": false, "localhost:80": false, "127.0.0.1": false,
	} {
		if _, err := Loopback(in); (err == nil) != ok {
			t.Errorf("%s: error %v, want ok=%v", in, err, ok)
		}
	}
}
