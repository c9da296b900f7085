package run

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// ProgressMode chooses the live display.
type ProgressMode string

// Progress modes.
const (
	ProgressAuto  ProgressMode = "auto"  // bars on a terminal, plain lines otherwise
	ProgressBars  ProgressMode = "bars"  // mpb bars
	ProgressPlain ProgressMode = "plain" // a line every few seconds
	ProgressOff   ProgressMode = "off"
)

// isTerminal reports whether w is a terminal with a known width and CI is
// not set. mpb writes nothing to a non-terminal (PLATFORM.md), and nothing
// either to a terminal that reports zero columns (some CI ptys): both get
// plain lines instead.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || os.Getenv("CI") != "" {
		return false
	}
	width, height, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0 && height > 0 // mpb draws nothing on a pty with zero rows either
}

// liveStats is what the display shows beyond the generator's counters.
type liveStats struct {
	lastP99 atomic.Int64 // p99 of the last complete interval, µs
}

// showProgress renders until ctx ends, then returns after a last update:
// one bar (or plain line) per executor with elapsed/total, target vs
// achieved rate, in-flight, errors and a rolling p99.
func showProgress(ctx context.Context, w io.Writer, mode ProgressMode, name string, gen loadDriver, _ *liveStats,
	c *results.Collector, clock *event.Clock) {
	if mode == ProgressAuto {
		mode = ProgressPlain
		if isTerminal(w) {
			mode = ProgressBars
		}
	}
	if mode == ProgressBars && !isTerminal(w) {
		// Bars asked for by name where no terminal is (a pipe, a log):
		// mpb draws nothing there, and with its own refresh it draws
		// lines cut at a width it cannot know, with cursor codes in a
		// log. Plain lines, said so, rather than no progress at all.
		fmt.Fprintln(w, "progress: no terminal to draw bars on; plain lines instead")
		mode = ProgressPlain
	}
	v := &liveView{gen: gen, c: c, clock: clock}
	v.meters = make([]rateMeter, len(v.names(name)))
	switch mode {
	case ProgressBars:
		v.bars(ctx, w, name)
	case ProgressPlain:
		v.plain(ctx, w, name)
	}
}

// liveView reads the generator's counters and the collector's rolling p99.
type liveView struct {
	gen    loadDriver
	c      *results.Collector
	clock  *event.Clock
	mu     sync.Mutex // decorators run on mpb's goroutine
	meters []rateMeter
	snap   []loadgen.Progress
}

// executorView is a driver that shows each executor (a plain run's
// generator); others show as one load.
type executorView interface {
	Executors() []loadgen.Progress
	Names() []string
}

func (v *liveView) names(name string) []string {
	if ev, ok := v.gen.(executorView); ok {
		return ev.Names()
	}
	return []string{name}
}

// refresh takes a snapshot of every executor and updates the rate meters.
func (v *liveView) refresh() []loadgen.Progress {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ev, ok := v.gen.(executorView); ok {
		v.snap = ev.Executors()
	} else {
		v.snap = []loadgen.Progress{v.gen.Progress()} // a game day: one load
	}
	now := v.clock.Now()
	for i, p := range v.snap {
		// Sent, not due: an arrival-rate executor's Scheduled counts
		// the requests it dropped at the in-flight cap too, and "sent
		// 400/s" beside "dropped 419" hid the overload.
		v.meters[i].add(now, p.Scheduled-p.Dropped)
	}
	return v.snap
}

func (v *liveView) line(i int) string {
	v.mu.Lock()
	pr := v.snap[i]
	achieved := v.meters[i].rate()
	v.mu.Unlock()
	p99 := "-"
	if d, ok := v.c.LiveP99(i, v.clock.Now()); ok {
		p99 = verdict.FormatDuration(d)
	}
	target := fmt.Sprintf("target %.0f/s · sent %.0f/s", pr.TargetRate, achieved)
	if pr.Kind == loadgen.VUs {
		target = fmt.Sprintf("VUs %d/%d · sent %.0f/s", pr.VUs, pr.TargetVUs, achieved)
	}
	return fmt.Sprintf("%s · in flight %d · errors %d · dropped %d · p99 %s", target, pr.InFlight, pr.Errors, pr.Dropped, p99)
}

func (v *liveView) plain(ctx context.Context, w io.Writer, name string) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	m := time.NewTicker(250 * time.Millisecond) // feeds the rate meters between lines
	defer m.Stop()
	names := v.names(name)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.C:
			v.refresh()
		case <-t.C:
			snap := v.refresh()
			for i, pr := range snap {
				label := ""
				if len(snap) > 1 {
					label = names[i] + " "
				}
				if pr.Elapsed == 0 && pr.Completed == 0 {
					fmt.Fprintf(w, "%s[waiting to start]\n", label)
					continue
				}
				fmt.Fprintf(w, "%s[%5.1fs/%s] %s\n", label, pr.Elapsed.Seconds(), totalText(pr.Total), v.line(i))
			}
		}
	}
}

func (v *liveView) bars(ctx context.Context, w io.Writer, name string) {
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(250*time.Millisecond))
	snap := v.refresh()
	names := v.names(name)
	var bars []*mpb.Bar
	for i := range snap {
		label := name
		if len(snap) > 1 {
			label = names[i]
		}
		bars = append(bars, p.AddBar(int64(snap[i].Total/time.Millisecond),
			mpb.PrependDecorators(decor.Name(label+" ", decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					v.mu.Lock()
					pr := v.snap[i]
					v.mu.Unlock()
					return fmt.Sprintf("%5.1fs/%s", pr.Elapsed.Seconds(), totalText(pr.Total))
				})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return v.line(i) })),
		))
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			snap := v.refresh()
			for i, b := range bars {
				b.SetCurrent(int64(snap[i].Elapsed / time.Millisecond))
				b.Abort(false)
			}
			p.Wait()
			return
		case <-t.C:
			snap := v.refresh()
			for i, b := range bars {
				b.SetCurrent(int64(snap[i].Elapsed / time.Millisecond))
			}
		}
	}
}

// totalText is an executor's length beside its elapsed time: whole
// seconds as such (30s), else to a tenth, as elapsed is: with %.0f a 2.5s
// run read "2.0s/2s" and a 500ms one "0.5s/0s".
func totalText(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// rateMeter turns a growing counter into a rate over about the last second.
type rateMeter struct {
	t [8]time.Duration
	n [8]int64
	k int // samples taken
}

func (m *rateMeter) add(t time.Duration, n int64) {
	m.t[m.k%len(m.t)], m.n[m.k%len(m.n)] = t, n
	m.k++
}

func (m *rateMeter) rate() float64 {
	if m.k < 2 {
		return 0
	}
	last := (m.k - 1) % len(m.t)
	first := last
	for j := 1; j < min(m.k, len(m.t)); j++ {
		i := (m.k - 1 - j) % len(m.t)
		first = i
		if m.t[last]-m.t[i] >= time.Second {
			break
		}
	}
	dt := m.t[last] - m.t[first]
	if dt <= 0 {
		return 0
	}
	return float64(m.n[last]-m.n[first]) / dt.Seconds()
}
