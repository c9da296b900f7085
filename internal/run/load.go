package run

import (
	"time"

	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// breakdown names the load's executors and request tags for the collector;
// requests of different executors with the same name share a tag.
func breakdown(cfg loadgen.Config) results.Breakdown {
	execs, err := loadgen.Executors(cfg)
	if err != nil {
		return results.Breakdown{} // loadgen.New reports it
	}
	var b results.Breakdown
	index := map[string]int{}
	for _, e := range execs {
		b.Executors = append(b.Executors, e.Name)
		tags := make([]int, len(e.Requests))
		for j, r := range e.Requests {
			t, ok := index[r.Name]
			if !ok {
				t = len(b.Tags)
				index[r.Name] = t
				b.Tags = append(b.Tags, r.Name)
			}
			tags[j] = t
		}
		b.TagOf = append(b.TagOf, tags)
		b.Closed = append(b.Closed, e.Kind == loadgen.VUs)
	}
	return b
}

// groupSummaries are the per-executor and per-tag stats (nil where the load
// has only one of either). Rates are over each executor's own window, cut
// at elapsed when the run was interrupted; a tag's, which any executor may
// send, over the load's window, ran (loadEnd), as the run's own: not over
// elapsed, which ends with the last answer, so a tag that is all of one
// executor's requests had a higher rate than its executor.
func groupSummaries(c *results.Collector, gen *loadgen.Generator, elapsed, ran time.Duration, interrupted bool, poisson []bool) (execs, tags []results.GroupSummary) {
	names := gen.Names()
	progress := gen.Executors()
	for i, st := range c.ExecutorStats() {
		start, end := gen.Window(i)
		if interrupted {
			end = max(min(end, elapsed), start) // one not started yet: an empty window, not an end before its start
		}
		window := end - start
		execs = append(execs, results.GroupSummary{
			Name: names[i], Kind: string(progress[i].Kind), Start: results.Sec(start), End: results.Sec(end),
			Stats: results.Summarize(st, window, gen.ScheduledOf(i, start, max(end, start))),
		})
		if i < len(poisson) && poisson[i] {
			execs[len(execs)-1].Stats.SetProfileRate(gen.ExpectedOf(i, start, max(end, start)), window)
		}
	}
	for i, st := range c.TagStats() {
		tags = append(tags, results.GroupSummary{Name: c.TagName(i), Stats: results.Summarize(st, ran, 0)})
	}
	return execs, tags
}

// poissonExecutors says which of the load's executors have Poisson
// arrivals (nil when the load does not compile to executors).
func poissonExecutors(cfg loadgen.Config) []bool {
	execs, err := loadgen.Executors(cfg)
	if err != nil {
		return nil
	}
	out := make([]bool, len(execs))
	for i, e := range execs {
		out[i] = e.Kind == loadgen.ArrivalRate && e.Poisson
	}
	return out
}

func anyPoisson(p []bool) bool {
	for _, x := range p {
		if x {
			return true
		}
	}
	return false
}

// plannedRequests is how many requests the load schedules: every
// arrival-rate executor of a plain run, or a game day's profile.
func plannedRequests(gen loadDriver) float64 {
	if g, ok := gen.(*loadgen.Generator); ok {
		return g.Expected(0, g.Duration())
	}
	return gen.Pacer().Total()
}
