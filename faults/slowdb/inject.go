package slowdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
)

// Errors from Inject.
var (
	// ErrFaultActive: a fault of this kind is already active on the
	// upstream; stop it first.
	ErrFaultActive = errors.New("a fault of this kind is already active")
	// ErrClosed: the upstream is closed.
	ErrClosed = errors.New("upstream is closed")
)

// Injection is one active fault. Stop ends it; it is safe to call from any
// goroutine, more than once.
type Injection struct {
	u    *Upstream
	kind string
	n    atomic.Uint64 // its effects

	stopOnce sync.Once
	stop     func()        // undoes the fault; may block until its goroutine ends
	ready    chan struct{} // closed once Inject has set stop and emitted db.fault.start
	done     chan struct{} // closed when Stop has finished
}

// Kind is the fault's kind.
func (i *Injection) Kind() string { return i.kind }

// Effects is how often this fault has taken effect (see Stats.FaultEffects
// for what counts). It can still grow after Stop: a wait on the fault that
// began while it was in force counts when it ends, whenever that is.
func (i *Injection) Effects() uint64 { return i.n.Load() }

// Done is closed once the fault has stopped, by Stop or by a lock_contention
// hold running out.
func (i *Injection) Done() <-chan struct{} { return i.done }

// Stop ends the fault and waits until it is undone (locks released,
// connections returned, the waits it caused counted), then emits
// db.fault.stop, stamped when the stop began.
func (i *Injection) Stop() {
	<-i.ready
	i.stopOnce.Do(func() {
		at := i.u.clock.Now()
		i.stop()
		i.u.mu.Lock()
		if i.u.active[i.kind] == i {
			delete(i.u.active, i.kind)
		}
		i.u.mu.Unlock()
		i.u.emitAt(at, "db.fault.stop", map[string]any{"kind": i.kind, "effects": i.Effects()})
		close(i.done)
	})
	<-i.done
}

// Inject starts fault f (which must pass Validate) and returns when it is in
// force: for lock_contention, when the locks are held. ctx bounds that setup
// only; the fault runs until Stop or Close. At most one fault of each kind is
// active at a time.
func (u *Upstream) Inject(ctx context.Context, f Fault) (*Injection, error) {
	if f == nil {
		return nil, errors.New("slowdb: nil fault")
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("slowdb: %s: %w", f.Kind(), err)
	}
	if v, ok := f.(TargetValidator); ok {
		if err := v.ValidateFor(u.name, u.cfg); err != nil {
			return nil, fmt.Errorf("slowdb: %s: %w", f.Kind(), err)
		}
	}
	kind := f.Kind()
	_, ok := kindIndex[kind]
	if !ok {
		return nil, fmt.Errorf("slowdb: %w %q", ErrUnknownFault, kind)
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, fmt.Errorf("slowdb: %s: %w", kind, ErrClosed)
	}
	if _, busy := u.active[kind]; busy {
		u.mu.Unlock()
		return nil, fmt.Errorf("slowdb: %s on %s: %w", kind, u.name, ErrFaultActive)
	}
	inj := &Injection{u: u, kind: kind, ready: make(chan struct{}), done: make(chan struct{})}
	// Reserve the slot while setting up, so two Injects of one kind cannot
	// race; the setup itself runs outside the lock (it may wait on the DB).
	u.active[kind] = inj
	u.mu.Unlock()

	attrs, stop, err := u.start(ctx, f, inj)
	if err != nil {
		u.mu.Lock()
		delete(u.active, kind)
		u.mu.Unlock()
		// Close may already be waiting on this injection: let its Stop
		// return without undoing anything.
		inj.stopOnce.Do(func() { close(inj.done) })
		close(inj.ready)
		return nil, fmt.Errorf("slowdb: %s on %s: %w", kind, u.name, err)
	}
	inj.stop = stop
	attrs["kind"] = kind
	u.emit("db.fault.start", attrs)
	close(inj.ready)
	return inj, nil
}

// start puts one fault in force and returns its event attributes and undo.
func (u *Upstream) start(ctx context.Context, f Fault, inj *Injection) (map[string]any, func(), error) {
	switch f := f.(type) {
	case *SlowQuery:
		u.rngMu.Lock()
		rng := rand.New(rand.NewPCG(u.rng.Uint64(), u.rng.Uint64()))
		u.rngMu.Unlock()
		p := f.Probability.F()
		if p == 0 {
			p = 1
		}
		u.slow.Store(&slowFault{inj: inj, rng: rng, sampler: dist.NewSampler(f.Latency, rng), prob: p})
		return map[string]any{"latency_upper_ms": ms(f.Latency.Upper()), "probability": p},
			func() { u.slow.Store(nil) }, nil

	case *StatementTimeout:
		u.stmtTO.Store(int64(f.Timeout.D()))
		u.stmtInj.Store(inj)
		return map[string]any{"timeout_ms": ms(f.Timeout.D()), "was_ms": ms(u.cfg.StatementTimeout.D())},
			func() { u.stmtTO.Store(0); u.stmtInj.Store(nil) }, nil

	case *ConnectionRefused:
		u.refInj.Store(inj)
		u.b.setRefused(true)
		return map[string]any{"simulated": u.cfg.Driver == SQLite},
			func() { u.b.setRefused(false); u.refInj.Store(nil) }, nil

	case *PoolExhaustion:
		n := f.Hold // at most the pool: Inject checked
		if n == 0 {
			n = u.cfg.PoolSize
		}
		hctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				release, err := u.b.hold(hctx)
				if err != nil {
					return // stopped before a connection came free, or the DB is down
				}
				<-hctx.Done()
				release()
			})
		}
		u.poolInj.Store(inj)
		return map[string]any{"hold": n, "pool_size": u.cfg.PoolSize},
			func() {
				cancel()
				wg.Wait()
				// The connections are back: a wait that begins from now
				// on queues behind the requests the fault kept waiting,
				// not on the fault. Stopped before active, so a wait that
				// ends in between is judged by when it began.
				u.poolLast.Store(&poolStop{inj: inj, at: time.Now().UnixNano()})
				u.poolInj.Store(nil)
				u.settlePoolWaits(100 * time.Millisecond)
			}, nil

	case *LockContention:
		share := f.Share.F()
		if share == 0 {
			share = 1
		}
		rows := int64(math.Ceil(share * float64(u.cfg.Customers)))
		release, err := u.b.lock(ctx, rows)
		if err != nil {
			return nil, nil, err
		}
		h := newLockHold(inj)
		u.lock.Store(h)
		var once sync.Once
		undo := func() {
			once.Do(func() {
				release()
				u.lock.Store(nil)
				// The waits that began on the lock end now or at their
				// next poll; count them before the fault reports.
				h.release(lockSettle)
			})
		}
		hold := f.Hold.D()
		var timerDone chan struct{}
		var stopTimer chan struct{}
		if hold > 0 {
			// The hold ran out: the locking transaction ends by itself, as
			// a batch job's would; the fault then stops.
			timerDone, stopTimer = make(chan struct{}), make(chan struct{})
			go func() {
				defer close(timerDone)
				t := time.NewTimer(hold)
				defer t.Stop()
				select {
				case <-t.C:
					undo()
					go inj.Stop()
				case <-stopTimer:
				}
			}()
		}
		attrs := map[string]any{"rows": rows, "hold_ms": ms(hold)}
		if u.cfg.Driver == SQLite {
			attrs["rows"] = "all (sqlite has one write lock)"
		}
		return attrs, func() {
			if stopTimer != nil {
				close(stopTimer)
				<-timerDone
			}
			undo()
		}, nil
	}
	return nil, nil, fmt.Errorf("%w %q", ErrUnknownFault, f.Kind())
}

// Active lists the kinds of the faults now active.
func (u *Upstream) Active() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]string, 0, len(u.active))
	for k := range u.active {
		out = append(out, k)
	}
	return out
}

func (u *Upstream) emit(typ string, attrs map[string]any) { u.emitAt(u.clock.Now(), typ, attrs) }

func (u *Upstream) emitAt(t time.Duration, typ string, attrs map[string]any) {
	u.sink.Emit(event.Event{T: t, Source: "upstream", Type: typ, Target: u.name, Attrs: attrs})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
