package plan

import (
	"strings"
)

// direct checks load.direct, the share of requests sent straight to the
// upstreams (layer attribution), and finds each request's upstream: the
// route its path takes through the gateway, or the only upstream.
func (c *compiler) direct() {
	share := c.f.Load.Direct.F()
	if share == 0 {
		return
	}
	gameDay := len(c.f.Safety) > 0
	for _, ph := range c.f.Phases {
		gameDay = gameDay || ph.Gate != ""
	}
	if gameDay {
		c.errorf("$.load.direct", "direct load is not available in a game day (safety checks or gates drive the load their own way)")
		return
	}
	if share < 0 || share >= 1 {
		c.errorf("$.load.direct", "direct must be within 0%%..99%% (the rest goes through the gateway), got %s", c.f.Load.Direct)
		return
	}
	c.p.Direct = share
	for i, r := range c.p.Load.Requests {
		up := ""
		switch {
		case c.p.Gateway != nil:
			best := -1
			for _, rt := range c.p.Gateway.Routes {
				if strings.HasPrefix(r.Path, rt.Path) && len(rt.Path) > best {
					best, up = len(rt.Path), rt.Upstream
				}
			}
		case c.p.GatewayContainer != nil:
			up = c.p.GatewayContainer.Upstream
		case len(c.p.Upstreams) == 1:
			up = c.p.Upstreams[0].Name
		}
		if up == "" {
			c.errorf("$.load.requests", "request %d (%s): no route or single upstream tells where to send it directly", i, r.Path)
			return
		}
		c.p.DirectUpstreams = append(c.p.DirectUpstreams, up)
	}
}
