package plan

import (
	"errors"
	"fmt"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/slowdb"
	"github.com/cascadehq/cascade/scenarios"
)

// upstreamKinds compiles what makes an upstream more than a fake HTTP
// service: a database behind it, or replicas in containers.
func (c *compiler) upstreamKinds() {
	for i, u := range c.f.Upstreams {
		p := fmt.Sprintf("$.upstreams[%d]", i)
		cfg := c.upstreamConfig(u.Name)
		if cfg == nil {
			continue // already reported
		}
		kind := u.Kind
		if kind == "" && u.Database != nil {
			kind = faults.UpstreamDatabase
		}
		switch kind {
		case "", faults.UpstreamHTTP:
			kind = faults.UpstreamHTTP
			if u.Database != nil {
				c.errorf(p+".database", "database: configures an upstream of kind database, not %s", kind)
			}
		case faults.UpstreamDatabase:
			b := u.Behaviour
			switch {
			case !b.Latency.IsZero():
				c.errorf(p+".latency", "a database upstream's latency comes from its database (use a slow_query fault); latency does not apply")
			case b.Status != 0:
				c.errorf(p+".status", "a database upstream answers from its database; status does not apply")
			case b.BodySize != 0:
				c.errorf(p+".body_size", "a database upstream answers from its database; body_size does not apply")
			}
			db := faults.DatabaseConfig{}
			if u.Database != nil {
				db = *u.Database
			}
			if err := db.Validate(cfg.Replicas); err != nil {
				c.fieldErrors(p+".database", err)
			} else if db.Driver == slowdb.Postgres && !db.Container && !c.opts.AllowRemote {
				if err := slowdb.CheckLocal(db.DSN); err != nil {
					c.fieldErrors(p+".database", err)
				}
			}
			db.AllowRemote = c.opts.AllowRemote
			cfg.Database = &db
		default:
			c.errorf(p+".kind", "unknown upstream kind %q (valid: http, database)", u.Kind)
		}
		cfg.Kind = kind
		if u.Container != nil && !u.Container.Off {
			switch {
			case kind == faults.UpstreamDatabase:
				c.errorf(p+".container", "a database upstream runs in cascade's process; its PostgreSQL can run in a container instead (database: {driver: postgres, container: true})")
			case len(u.Listen) > 0:
				c.errorf(p+".listen", "listen and container exclude each other: a containerised replica listens where its container does")
			default:
				if err := u.Container.Validate(cfg.Replicas); err != nil {
					c.errorf(p+".container", "%v", err)
				}
				cc := u.Container.ContainerConfig
				cfg.Container = &cc
			}
		}
	}
	// c.ups points into c.p.Upstreams; appends may have moved it.
	for i := range c.p.Upstreams {
		c.ups[c.p.Upstreams[i].Name] = &c.p.Upstreams[i]
	}
}

func (c *compiler) upstreamConfig(name string) *faults.UpstreamConfig {
	for i := range c.p.Upstreams {
		if c.p.Upstreams[i].Name == name {
			return &c.p.Upstreams[i]
		}
	}
	return nil
}

// fieldErrors reports each *slowdb.FieldError at its own field under path.
func (c *compiler) fieldErrors(path string, err error) {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if jj, ok := e.(interface{ Unwrap() []error }); ok {
				list = append(list, jj.Unwrap()...)
			} else {
				list = append(list, e)
			}
		}
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var fe *slowdb.FieldError
		if errors.As(e, &fe) {
			c.errorf(path+"."+fe.Field, "%s", fe.Msg)
		} else {
			c.errorf(path, "%v", e)
		}
	}
}

// specError reports a fault's parameter error at the parameter when the kind
// names it.
func (c *compiler) specError(path, kind string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			c.specError(path, kind, e)
		}
		return
	}
	var fe *slowdb.FieldError
	if errors.As(err, &fe) {
		c.errorf(path+"."+fe.Field, "%s: %s", kind, fe.Msg)
		return
	}
	var pe *faults.ParamError
	if errors.As(err, &pe) {
		c.errorf(path+"."+pe.Field, "%s: %s", kind, pe.Msg)
		return
	}
	c.errorf(path, "%s: %v", kind, err)
}

// faultExtras checks that the kind can act on its target, and compiles the
// fault's timing: duration, repeat and ramp. It reports whether the entry
// is good to add.
func (c *compiler) faultExtras(p string, f scenarios.Fault, up *faults.UpstreamConfig, e *faults.Entry) bool {
	ok := true
	kind, err := faults.LookupKind(f.Kind)
	if err != nil {
		return false // reported at the kind
	}
	if err := kind.Applies(up.Kind, up.Container != nil); err != nil {
		c.errorf(p+".kind", "%v (target %s)", err, f.Target)
		ok = false
	}
	end := c.p.Duration
	if f.Start.D() >= end && end > 0 {
		c.errorf(p+".start", "the fault starts at %s, %s the load ends at %s", f.Start, atOrAfter(f.Start.D(), end), end)
		ok = false
	}
	if f.Repeat != nil {
		r := f.Repeat
		switch {
		case r.Times < 1:
			c.errorf(p+".repeat.times", "times must be at least 1")
			ok = false
		case r.Times > 1 && r.Every.D() <= 0:
			c.errorf(p+".repeat.every", "every is required: the time from one onset to the next, e.g. every: 10s")
			ok = false
		case e.Duration <= 0:
			c.errorf(p+".duration", "a repeated fault needs a duration for each occurrence")
			ok = false
		case r.Times > 1 && e.Duration > r.Every.D():
			c.errorf(p+".duration", "each occurrence (%s) would outlast the repeat interval (%s)", e.Duration, r.Every)
			ok = false
		}
		e.Every, e.Times = r.Every.D(), r.Times
		if ok && end > 0 {
			// Occurrences that would start after the load are dropped; the
			// last one that starts is cut at the end.
			fit := 0
			for i := 0; i < r.Times; i++ {
				if e.Start+time.Duration(i)*e.Every < end {
					fit++
				}
			}
			if fit < r.Times {
				c.warnf(p+".repeat.times", "only %d of %d occurrences start before the load ends at %s", fit, r.Times, end)
				e.Times = max(fit, 1)
			}
		}
	} else {
		if e.Duration == 0 || e.Start+e.Duration > end {
			if e.Duration != 0 {
				c.warnf(p+".duration", "the fault would end at %s, after the load ends at %s; it is cut at the end", e.Start+e.Duration, end)
			}
			e.Duration = end - e.Start
		}
	}
	if f.Ramp > 0 {
		switch {
		case kind.Ramp == "":
			c.errorf(p+".ramp", "fault kind %s does not ramp (kinds that do: %s)", f.Kind, rampKinds())
			ok = false
		case e.Duration > 0 && f.Ramp.D() > e.Duration:
			c.warnf(p+".ramp", "the ramp (%s) is longer than the fault (%s): it never reaches full strength", f.Ramp, e.Duration)
		}
		e.Ramp = f.Ramp.D()
	}
	return ok
}

func rampKinds() string {
	var out string
	for _, k := range faults.AllKinds() {
		if k.Ramp != "" {
			if out != "" {
				out += ", "
			}
			out += k.Name + " (" + k.Ramp + ")"
		}
	}
	return out
}

// databaseLint is the timeout cascade for database upstreams: the database's
// statement and lock timeouts must be shorter than the upstream's own
// deadline, which must be shorter than the gateway's, or a layer never gets
// to answer with its own cause.
func (c *compiler) databaseLint() {
	if c.p.Gateway == nil {
		return
	}
	for _, u := range c.p.Upstreams {
		if u.Database == nil {
			continue
		}
		p := upstreamPath(c.f, u.Name)
		db := u.Database.Config.WithDefaults()
		if db.StatementTimeout.D() >= db.UpstreamTimeout.D() {
			c.warnf(p+".database.statement_timeout", "upstream %s: statement_timeout %s is not shorter than upstream_timeout %s: the upstream gives up (upstream_timeout) before the database can answer db_timeout",
				u.Name, db.StatementTimeout, db.UpstreamTimeout)
		}
		// A wait for a locked row ends at the lock timeout; on postgres
		// the statement timeout covers the wait too (SET LOCAL on the
		// statement that waits), while sqlite waits at BEGIN, before its
		// statement deadline starts.
		lockWait := db.LockTimeout.D()
		if db.Driver == slowdb.Postgres {
			lockWait = min(lockWait, db.StatementTimeout.D())
		}
		if lockWait >= db.UpstreamTimeout.D() {
			c.warnf(p+".database.lock_timeout", "upstream %s: lock_timeout %s is not shorter than upstream_timeout %s: a request waiting on a locked row is cut by the upstream (upstream_timeout) before the database can answer db_timeout",
				u.Name, db.LockTimeout, db.UpstreamTimeout)
		}
		for j, r := range c.p.Gateway.Routes {
			if r.Upstream != u.Name {
				continue
			}
			t := r.Timeouts.Effective()
			if limit := min(t.ResponseHeader.D(), t.Total.D()); db.UpstreamTimeout.D() >= limit {
				c.warnf(fmt.Sprintf("$.gateway.routes[%d].timeouts", j), "route %s: the gateway gives up at %s, before upstream %s's own upstream_timeout %s: clients see gateway_timeout instead of the upstream's answer",
					r.Path, limit, u.Name, db.UpstreamTimeout)
			}
		}
	}
}

func upstreamPath(f *scenarios.File, name string) string {
	if f == nil {
		return "" // a plan's cascade recomputed without its file (Layers)
	}
	for i, u := range f.Upstreams {
		if u.Name == name {
			return fmt.Sprintf("$.upstreams[%d]", i)
		}
	}
	return "$.upstreams"
}
