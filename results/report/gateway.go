package report

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/cascadehq/cascade/results"
)

// gatewayBlock prints the built-in gateway's decisions: per upstream what
// it received (attempts, so retry amplification shows) and what the
// breaker and bulkhead did; per route retries and fallbacks.
func gatewayBlock(b *strings.Builder, g *results.GatewayStats) {
	if g == nil || len(g.Upstreams) == 0 {
		return
	}
	b.WriteString("\nGateway\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, u := range g.Upstreams {
		line := fmt.Sprintf("  %s\t%d requests\t%d attempts (×%.2f)", u.Name, u.Requests, u.Attempts, u.Amplification())
		if u.BreakerState != "" {
			line += fmt.Sprintf("\tbreaker %s, opened %d×, %d rejected", u.BreakerState, u.BreakerOpened, u.BreakerRejected)
		}
		if u.Overflows > 0 {
			line += fmt.Sprintf("\t%d shed", u.Overflows)
		}
		if u.Ejections > 0 {
			line += fmt.Sprintf("\t%d ejections", u.Ejections)
		}
		if u.Panics > 0 {
			line += fmt.Sprintf("\tin panic %d× (balanced over every replica)", u.Panics)
		}
		fmt.Fprintln(tw, line)
	}
	for _, r := range g.Routes {
		if r.Retries+r.Hedges+r.RetriesDenied+r.BudgetExhausted+r.Fallbacks+r.RateLimited == 0 {
			continue
		}
		retries := fmt.Sprintf("%d retries", r.Retries)
		if r.Hedges > 0 {
			retries += fmt.Sprintf(", %d hedges", r.Hedges)
		}
		fmt.Fprintf(tw, "  route %s\t%s\t%d denied by policy, %d by budget\t%d fallbacks\t%d rate limited\n",
			r.Path, retries, r.RetriesDenied, r.BudgetExhausted, r.Fallbacks, r.RateLimited)
	}
	tw.Flush()
}
