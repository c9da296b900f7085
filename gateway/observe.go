package gateway

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// finish records the exchange: counters, the termination event (for what
// the gateway decided), the access-log line. On the success path it costs
// a few atomic adds and, with an access log, one line.
func (ex *exchange) finish() {
	g, rt := ex.g, ex.rt
	end := ex.end
	if end.IsZero() {
		end = time.Now()
	}
	elapsed := end.Sub(ex.start)
	if rt != nil {
		rt.causes[ex.cause].Add(1)
		rt.hist.observe(elapsed)
		if ex.cause != cause.OK && ex.cause.Layer() == cause.LayerGateway && !ex.passed {
			ex.terminationEvent(elapsed)
		}
	} else {
		g.metrics.noRoute.Add(1)
		ex.terminationEvent(elapsed)
	}
	if g.alog != nil {
		g.alog.write(ex, elapsed)
	}
}

// terminationEvent reports an outcome the gateway decided, thinned to one
// event per route and cause per second (the first at once) carrying the
// count it stands for: the cause header of every response already records
// each one, and under overload an event per request would outgrow the
// samples.
func (ex *exchange) terminationEvent(elapsed time.Duration) {
	g, rt := ex.g, ex.rt
	now := time.Now()
	var due bool
	var n int64
	if rt != nil {
		due, n = rt.thr[ex.cause].Hit(now)
	} else {
		due, n = g.metrics.thrNoRoute.Hit(now)
	}
	if !due {
		return
	}
	attrs := map[string]any{"cause": ex.cause.String(), "detail": ex.detail, "path": string(ex.uri),
		"status": ex.status, "elapsed_ms": millis(elapsed), "count": n}
	target := ""
	if rt != nil {
		attrs["route"] = rt.path
		target = rt.up.name
		if ex.attempts > 0 {
			attrs["attempts"], attrs["replica"] = ex.attempts, ex.replica
		}
		if ex.hedges > 0 {
			attrs["hedges"] = ex.hedges
		}
		if ex.fbKind != "" {
			attrs["fallback"] = ex.fbKind
		}
	}
	g.emit("gateway."+ex.cause.String(), target, attrs)
}

// attemptFailed reports attempt at, which failed and is about to be
// retried: err for a failure without an answer, else the status that will
// be retried. Thinned like termination events. The attempt's own number
// and replica, not the exchange's latest: with hedging, a later attempt on
// another replica may have started before this one failed.
func (ex *exchange) attemptFailed(at *attempt, err error, status int) {
	rt := ex.rt
	c, detail := ex.rh.outcome(), "upstream answered "+strconv.Itoa(status)
	if err != nil {
		c, detail = classify(err)
	}
	due, n := rt.thrTry[c].Hit(time.Now())
	if !due {
		return
	}
	ex.g.emit("attempt.fail", rt.up.name, map[string]any{"route": rt.path, "attempt": at.n, "replica": at.ep.addr,
		"cause": c.String(), "detail": detail, "status": status, "count": n})
}

func (g *Gateway) emit(typ, target string, attrs map[string]any) {
	g.opts.Sink.Emit(event.Event{T: g.opts.Clock.Now(), Source: emit.Source, Type: typ, Target: target, Attrs: attrs})
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// accessLog writes one JSON line per request. Lines are built by hand into
// a reused buffer (no reflection), and written through one buffered writer
// flushed every second and at Close.
type accessLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	buf  []byte
	last time.Time
	err  error
}

func newAccessLog(w io.Writer) *accessLog {
	return &accessLog{w: bufio.NewWriterSize(w, 64<<10)}
}

// Access-log fields, in this order:
//
//	t            seconds on the run's clock
//	ts           wall-clock time, RFC 3339 with microseconds
//	request_id   X-Request-Id (the client's, or generated)
//	method, uri  as the client sent them
//	route        the matched route ("" when none)
//	upstream     the route's upstream
//	replica      host:port of the last attempt's replica
//	attempts     attempts made (0: none, the gateway answered first)
//	hedges       hedges among them, when the route hedged this request
//	answered     with hedges: the attempt whose answer was forwarded
//	             (0: none was; replica is then the last one picked)
//	status       the status the client got (499: it left first)
//	cause        the termination cause: for an answer passed on, the
//	             upstream's X-Cascade-Cause as the client reads it
//	             (db_timeout, upstream_timeout, ...; upstream_error when
//	             it names none), the cause the run's summary counts.
//	             Two outcomes the gateway sees otherwise than the
//	             client: a client whose connection closed or reset
//	             before the answer was out is client_gone here, which
//	             says only that it left (the client counts why:
//	             client_timeout when its own timeout fired, aborted when
//	             the run stopped), and an answer cut
//	             after its head was out (upstream_reset mid-body, say) has
//	             the gateway's cause here while the client counts reset
//	detail       why, for causes the gateway decided
//	fallback     cache or static, when a fallback answered
//	duration_ms  from the request read to the answer written
//	bytes        response body bytes forwarded
func (l *accessLog) write(ex *exchange, elapsed time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	b = append(b, `{"t":`...)
	b = strconv.AppendFloat(b, ex.g.opts.Clock.Offset(ex.start).Seconds(), 'f', 6, 64)
	b = append(b, `,"ts":"`...)
	b = ex.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","request_id":`...)
	b = appendJSON(b, ex.reqID)
	b = append(b, `,"method":`...)
	b = appendJSON(b, []byte(ex.method))
	b = append(b, `,"uri":`...)
	b = appendJSON(b, ex.uri)
	if ex.rt != nil {
		b = append(b, `,"route":`...)
		b = appendJSON(b, []byte(ex.rt.path))
		b = append(b, `,"upstream":`...)
		b = appendJSON(b, []byte(ex.rt.up.name))
	}
	if ex.replica != "" {
		b = append(b, `,"replica":"`...)
		b = append(b, ex.replica...)
		b = append(b, '"')
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(ex.attempts), 10)
	if ex.hedges > 0 {
		b = append(b, `,"hedges":`...)
		b = strconv.AppendInt(b, int64(ex.hedges), 10)
		b = append(b, `,"answered":`...)
		b = strconv.AppendInt(b, int64(ex.answered), 10)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ex.status), 10)
	b = append(b, `,"cause":"`...)
	b = append(b, ex.cause.String()...)
	b = append(b, '"')
	if ex.detail != "" {
		b = append(b, `,"detail":`...)
		b = appendJSON(b, []byte(ex.detail))
	}
	if ex.fbKind != "" {
		b = append(b, `,"fallback":"`...)
		b = append(b, ex.fbKind...)
		b = append(b, '"')
	}
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(elapsed.Nanoseconds())/1e6, 'f', 3, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, ex.bytes, 10)
	b = append(b, "}\n"...)
	l.buf = b
	if _, err := l.w.Write(b); err != nil && l.err == nil {
		l.err = err
	}
	if now := time.Now(); now.Sub(l.last) >= time.Second {
		l.last = now
		if err := l.w.Flush(); err != nil && l.err == nil {
			l.err = err
		}
	}
}

func (l *accessLog) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = err
	}
	return l.err
}

// appendJSON appends s as a JSON string.
func appendJSON(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < ' ':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
