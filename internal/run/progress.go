package run

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/cascadehq/cascade/loadgen"
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
	width, _, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0
}

// liveStats is what the display shows beyond the generator's counters.
type liveStats struct {
	lastP99 atomic.Int64 // p99 of the last complete interval, µs
}

// showProgress renders until ctx ends, then returns after a last update.
func showProgress(ctx context.Context, w io.Writer, mode ProgressMode, name string, gen loadDriver, live *liveStats) {
	if mode == ProgressAuto {
		mode = ProgressPlain
		if isTerminal(w) {
			mode = ProgressBars
		}
	}
	switch mode {
	case ProgressBars:
		bars(ctx, w, name, gen, live)
	case ProgressPlain:
		plain(ctx, w, gen, live)
	}
}

func line(pr loadgen.Progress, live *liveStats) string {
	achieved := 0.0
	if pr.Elapsed > 0 {
		achieved = float64(pr.Completed+pr.InFlight+pr.Dropped) / pr.Elapsed.Seconds()
	}
	p99 := "-"
	if v := live.lastP99.Load(); v > 0 {
		p99 = verdict.FormatDuration(time.Duration(v) * time.Microsecond)
	}
	return fmt.Sprintf("target %.0f/s · sent %.0f/s · in flight %d · errors %d · dropped %d · last-second p99 %s",
		pr.TargetRate, achieved, pr.InFlight, pr.Errors, pr.Dropped, p99)
}

func plain(ctx context.Context, w io.Writer, gen loadDriver, live *liveStats) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pr := gen.Progress()
			fmt.Fprintf(w, "[%5.1fs/%.0fs] %s\n", pr.Elapsed.Seconds(), pr.Total.Seconds(), line(pr, live))
		}
	}
}

func bars(ctx context.Context, w io.Writer, name string, gen loadDriver, live *liveStats) {
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(250*time.Millisecond))
	total := gen.Progress().Total
	bar := p.AddBar(int64(total/time.Millisecond),
		mpb.PrependDecorators(decor.Name(name+" ", decor.WCSyncSpaceR),
			decor.Any(func(decor.Statistics) string {
				pr := gen.Progress()
				return fmt.Sprintf("%5.1fs/%.0fs", pr.Elapsed.Seconds(), pr.Total.Seconds())
			})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return line(gen.Progress(), live) })),
	)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			bar.SetCurrent(int64(gen.Progress().Elapsed / time.Millisecond))
			bar.Abort(false)
			p.Wait()
			return
		case <-t.C:
			bar.SetCurrent(int64(gen.Progress().Elapsed / time.Millisecond))
		}
	}
}
