package results

import (
	"bufio"
	"fmt"
	"io"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// HlogFile is the run directory's HdrHistogram interval log.
const HlogFile = "latency.hlog"

// Tags of the histograms in the .hlog; the untagged one is the latency from
// intended send (what HdrHistogram's tools show by default).
const (
	HlogTagService = "service" // from actual send: what a closed loop would report
)

// HlogWriter writes interval histograms in HdrHistogram's interval log
// format (version 1.3, what HistogramLogProcessor, HdrHistogramVisualizer and
// hdrhistogram-go's HistogramLogReader read). Values are in nanoseconds, the
// format's convention, so the tools' default unit ratio shows milliseconds.
//
//	#[Histogram log format version 1.3]
//	#[StartTime: 1763770500.000 (seconds since epoch), ...]
//	#[BaseTime: 1763770500.000 (seconds since epoch)]
//	"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//	0.000,1.000,12.345,HISTFAAA...               latency from intended send
//	Tag=service,0.000,1.000,9.876,HISTFAAA...    latency from actual send
type HlogWriter struct {
	ns      *hdr.Histogram // reused for each conversion
	buf     *bufio.Writer
	lw      *hdr.HistogramLogWriter
	startMs int64
	next    time.Duration // end of the last interval written: the log covers [0, next)
	empty   *hdr.Histogram
	err     error
}

// NewHlogWriter writes the log's header; start is the run clock's zero, and
// interval timestamps are seconds after it.
func NewHlogWriter(w io.Writer, start time.Time) *HlogWriter {
	h := &HlogWriter{buf: bufio.NewWriterSize(w, 64<<10), startMs: start.UnixMilli()}
	h.lw = hdr.NewHistogramLogWriter(h.buf)
	h.lw.SetBaseTime(h.startMs)
	h.keep(h.lw.OutputLogFormatVersion())
	// Our own header lines, not the library's OutputStartTime and
	// OutputBaseTime: those print whole seconds, while the timestamps below
	// are relative to the start to the millisecond, so a reader put every
	// interval up to 999 ms before it happened. The format (and Java's
	// writer) gives seconds since the epoch with three decimals; the
	// readers' patterns take them.
	secs := fmt.Sprintf("%d.%03d", h.startMs/1000, h.startMs%1000)
	_, err := fmt.Fprintf(h.buf, "#[StartTime: %s (seconds since epoch), %s]\n#[BaseTime: %s (seconds since epoch)]\n",
		secs, start.UTC().Format("2006-01-02T15:04:05.000Z07:00"), secs)
	h.keep(err)
	h.keep(h.lw.OutputLegend())
	return h
}

func (h *HlogWriter) keep(err error) {
	if err != nil && h.err == nil {
		h.err = err
	}
}

// Write appends one interval: its corrected (untagged) and uncorrected
// (Tag=service) latency histograms. Intervals come in order. A stretch
// before iv that no interval covered (the collector has intervals only
// where requests were intended: a load that starts late, a pause between
// executors) is written first as one empty interval, so the log covers the
// run without holes and a stretch with no request is visible as such.
func (h *HlogWriter) Write(iv Interval, width time.Duration) {
	if iv.Start > h.next {
		if h.empty == nil {
			h.empty = hdr.New(1000*histMin, 1000*histMax, histSigFigs)
		}
		h.write(h.next, iv.Start, h.empty, h.empty)
	}
	h.write(iv.Start, iv.Start+width, iv.Stats.Latency, iv.Stats.Service)
	h.next = max(h.next, iv.Start+width)
}

// write writes the histograms (µs, or the empty one) of [from, to).
func (h *HlogWriter) write(from, to time.Duration, latency, service *hdr.Histogram) {
	start := h.startMs + from.Milliseconds()
	end := h.startMs + to.Milliseconds()
	for _, x := range []struct {
		tag string
		src *hdr.Histogram
	}{{"", latency}, {HlogTagService, service}} {
		n := x.src
		if n != h.empty {
			n = h.toNanos(x.src)
		}
		n.SetStartTimeMs(start)
		n.SetEndTimeMs(end)
		n.SetTag(x.tag)
		if n == h.empty {
			h.writeEmpty(from, to, x.tag)
			continue
		}
		h.keep(h.lw.OutputIntervalHistogram(n))
	}
}

// writeEmpty writes the empty interval [from, to) as the library would,
// but with an Interval_Max of 0, as Java's writer gives an empty
// histogram: the library's is the top of the lowest bucket, 0.000511 ms
// for an interval with no request in it.
func (h *HlogWriter) writeEmpty(from, to time.Duration, tag string) {
	payload, err := h.empty.EncodeV2()
	if err != nil {
		h.keep(err)
		return
	}
	if tag != "" {
		tag = "Tag=" + tag + ","
	}
	a, b := float64(from.Milliseconds())/1000, float64(to.Milliseconds())/1000
	_, err = fmt.Fprintf(h.buf, "%s%f,%f,%f,%s\n", tag, a, b-a, 0.0, payload)
	h.keep(err)
}

// Flush pushes what was written to the underlying writer.
func (h *HlogWriter) Flush() error {
	h.keep(h.buf.Flush())
	return h.err
}

// toNanos copies a microsecond histogram into a nanosecond one. The
// recorded histograms stay in microseconds (their range, 1 µs to 10 min at
// three digits, costs a third of a nanosecond one's memory per shard);
// copying one per interval per second costs a few hundred bucket visits.
func (h *HlogWriter) toNanos(us *hdr.Histogram) *hdr.Histogram {
	if h.ns == nil {
		h.ns = hdr.New(1000*histMin, 1000*histMax, histSigFigs)
	}
	ns := h.ns
	ns.Reset()
	for _, b := range us.Distribution() {
		if b.Count > 0 {
			_ = ns.RecordValues(b.To*1000, b.Count)
		}
	}
	return ns
}
