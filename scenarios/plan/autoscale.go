package plan

import (
	"fmt"
	"strings"

	"github.com/cascadehq/cascade/autoscale"
)

// autoscalers checks the autoscale: list and fills its defaults. A fault
// that names a replica index must name one the autoscaler never removes
// (below min_replicas), or the replica could be gone when the fault starts.
func (c *compiler) autoscalers() {
	seen := map[string]bool{}
	for i, a := range c.f.Autoscale {
		p := fmt.Sprintf("$.autoscale[%d]", i)
		up := c.ups[a.Upstream]
		if up == nil {
			c.errorf(p+".upstream", "unknown upstream %q (declared: %s)", a.Upstream, strings.Join(c.upstreamNames(), ", "))
			continue
		}
		if seen[a.Upstream] {
			c.errorf(p+".upstream", "upstream %q already has an autoscaler", a.Upstream)
			continue
		}
		seen[a.Upstream] = true
		if errs := c.doc.Position(p, a.Validate()); len(errs) > 0 {
			c.errs = append(c.errs, errs...)
			continue
		}
		s := a.Settings()
		if s.Mode == autoscale.ModeScale {
			if len(up.Listen) > 0 {
				c.errorf(p+".upstream", "upstream %q has fixed listen addresses; replicas an autoscaler adds listen on kernel-chosen ports, which an external gateway's config cannot name: use mode: oracle", a.Upstream)
				continue
			}
			if c.f.Gateway.External != "" {
				c.errorf(p+".mode", "an external gateway cannot learn about new replicas: use mode: oracle to judge what an HPA would have done")
				continue
			}
			if gc := c.f.Gateway.Container; gc != nil {
				c.errorf(p+".mode", "the %s container's configuration is written once, at its start: it cannot learn about new replicas; use mode: oracle to judge what an HPA would have done", gc.Kind)
				continue
			}
			if up.Replicas < s.Min || up.Replicas > s.Max {
				c.errorf(p+".min_replicas", "upstream %q starts with %d replicas, outside [min_replicas %d, max_replicas %d]", a.Upstream, up.Replicas, s.Min, s.Max)
				continue
			}
			for j, e := range c.p.Timeline {
				if e.Upstream == a.Upstream && e.Replica >= s.Min {
					c.errorf(fmt.Sprintf("$.faults[%d].target", j), "fault %s targets replica %d of %s, which its autoscaler may remove (min_replicas %d): target the upstream or a replica below %d",
						e.Name, e.Replica, a.Upstream, s.Min, s.Min)
				}
			}
		}
		if s.SyncPeriod > c.p.Duration && c.p.Duration > 0 {
			c.warnf(p+".sync_period", "the autoscaler syncs every %s, longer than the load (%s): it will never act", s.SyncPeriod, c.p.Duration)
		}
		c.p.Autoscale = append(c.p.Autoscale, s)
	}
}
