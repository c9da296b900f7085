package gateway

import (
	"io"
	"net"
	"testing"
	"time"
)

// The idle timeout bounds each wait between body reads from when the wait
// began. On the event loops the read deadline armed for the head's
// client-presence poll fired first; fillBody then went on with a new
// window measured from that moment, so a 200 ms idle timeout let a
// 300 ms gap through and cut the body only after 600 ms.
func TestIdleTimeoutCountsFromTheWaitsStart(t *testing.T) {
	for _, loops := range []int{0, 1} {
		trickle := rawServer(t, func(c net.Conn) {
			readRequest(c)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
			for range 10 {
				time.Sleep(300 * time.Millisecond)
				if _, err := io.WriteString(c, "x"); err != nil {
					return
				}
			}
		})
		var log syncBuffer
		g := gw(t, one(Route{Timeouts: Timeouts{Idle: du(200 * time.Millisecond), Total: du(5 * time.Second)}}, Upstream{}, trickle),
			nil, func(o *Options) { o.Loops, o.AccessLog = loops, &log })
		start := time.Now()
		body, err := getAll(t, g.URL()+"/")
		if err == nil || len(body) != 0 {
			t.Errorf("loops %d: body %q, err %v: want no byte and a cut connection", loops, body, err)
		}
		within(t, "idle timeout", time.Since(start), ms(180), ms(290))
		g.Close()
		if lines := log.lines(t); len(lines) != 1 || lines[0]["bytes"] != 0.0 || lines[0]["cause"] != "gateway_timeout" {
			t.Errorf("loops %d: access log %v", loops, lines)
		}
	}
}
