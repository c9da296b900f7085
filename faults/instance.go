package faults

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// Instance faults (Chaos Monkey's): they act on a replica as a whole, in
// this process (the listener, its connections) or, for a containerised
// replica, on its process through the container API.

func init() {
	inst := func(name, doc string, f func() Spec) {
		RegisterKind(Kind{Name: name, Layer: LayerInstance, Doc: doc, New: f})
	}
	inst("down", "closes the listener (connection refused), resets open connections; back when the fault ends",
		func() Spec { return &DownSpec{} })
	inst("kill", "kills the replica: listener gone, in-flight connections reset; it stays down",
		func() Spec { return &KillSpec{} })
	inst("restart", "kills the replica, then brings it back on the same address after a delay",
		func() Spec { return &RestartSpec{Delay: units.Duration(time.Second)} })
	inst("pause", "freezes the replica: connections complete in the kernel, nothing is read or answered until the fault ends",
		func() Spec { return &PauseSpec{} })
}

var (
	_ ReplicaFault = (*downFault)(nil)
	_ ReplicaFault = (*killFault)(nil)
	_ ReplicaFault = (*restartFault)(nil)
	_ ReplicaFault = (*pauseFault)(nil)
)

// DownSpec closes the replica's listener (new connections are refused) and
// resets its open connections; the listener comes back when the fault ends.
type DownSpec struct{}

// Validate implements Spec.
func (s *DownSpec) Validate() error { return nil }

// New implements Spec.
func (s *DownSpec) New() Fault { return &downFault{} }

type downFault struct{}

func (*downFault) Kind() string { return "down" }

func (*downFault) Apply(r *Replica, fx *Effect) error {
	fx.Fired()
	return r.kill()
}

func (*downFault) Revert(r *Replica) error { return r.revive() }

// KillSpec kills the replica for good: the listener closes, in-flight
// connections are reset, and it stays down after the fault's window (use
// restart to bring it back).
type KillSpec struct{}

// Validate implements Spec.
func (s *KillSpec) Validate() error { return nil }

// New implements Spec.
func (s *KillSpec) New() Fault { return &killFault{} }

type killFault struct{}

func (*killFault) Kind() string { return "kill" }

func (*killFault) Apply(r *Replica, fx *Effect) error {
	fx.Fired()
	return r.kill()
}

func (*killFault) Revert(*Replica) error { return nil }

// RestartSpec kills the replica and brings it back on the same address after
// Delay (or when the fault's window ends, if that is sooner).
type RestartSpec struct {
	// Delay before the replica is back (default 1s).
	Delay units.Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
}

// Validate implements Spec.
func (s *RestartSpec) Validate() error {
	if s.Delay.D() < 0 {
		return fmt.Errorf("delay must not be negative")
	}
	return nil
}

// New implements Spec.
func (s *RestartSpec) New() Fault {
	return &restartFault{delay: s.Delay.D(), back: map[*Replica]chan struct{}{}}
}

type restartFault struct {
	delay time.Duration
	mu    sync.Mutex
	back  map[*Replica]chan struct{} // closed to bring the replica back now
	wg    sync.WaitGroup
}

func (*restartFault) Kind() string { return "restart" }

func (f *restartFault) Apply(r *Replica, fx *Effect) error {
	fx.Fired()
	if err := r.kill(); err != nil {
		return err
	}
	now := make(chan struct{})
	f.mu.Lock()
	f.back[r] = now
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-now:
		case <-r.ctx.Done():
			return
		}
		if err := r.revive(); err != nil {
			r.emit("replica.error", map[string]any{"error": err.Error()})
		}
	}()
	return nil
}

func (f *restartFault) Revert(r *Replica) error {
	f.mu.Lock()
	if ch, ok := f.back[r]; ok {
		close(ch)
		delete(f.back, r)
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// PauseSpec freezes the replica until the fault ends, as SIGSTOP or a long
// GC pause would: connections still complete in the kernel's backlog, but
// nothing is accepted, read or answered; then everything resumes.
type PauseSpec struct{}

// Validate implements Spec.
func (s *PauseSpec) Validate() error { return nil }

// New implements Spec.
func (s *PauseSpec) New() Fault { return &pauseFault{} }

type pauseFault struct{}

func (*pauseFault) Kind() string { return "pause" }

func (*pauseFault) Apply(r *Replica, fx *Effect) error {
	fx.Fired()
	if r.proc != nil {
		ctx, cancel := r.opContext()
		defer cancel()
		if err := r.proc.Pause(ctx); err != nil {
			return err
		}
	} else {
		r.pause()
	}
	r.emit("replica.pause", nil)
	return nil
}

func (*pauseFault) Revert(r *Replica) error {
	if r.proc != nil {
		ctx, cancel := r.opContext()
		defer cancel()
		if err := r.proc.Resume(ctx); err != nil {
			return err
		}
	} else {
		r.resume()
	}
	r.emit("replica.resume", nil)
	return nil
}

// processOpTimeout bounds one container operation (stop, start, pause).
const processOpTimeout = 60 * time.Second

// opContext bounds an operation on the replica's process; it also ends when
// the replica closes.
func (r *Replica) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, processOpTimeout)
}

// kill stops the replica serving: its listener closes and its connections
// reset (in this process), or its process is killed (container).
func (r *Replica) kill() error {
	var err error
	if r.proc != nil {
		ctx, cancel := r.opContext()
		err = r.proc.Kill(ctx)
		cancel()
		r.mu.Lock()
		r.down = true
		r.mu.Unlock()
	} else {
		r.resume() // a killed process is not paused any more
		err = r.stopListening()
	}
	r.syncProxy()
	r.emit("replica.down", nil)
	return err
}

// revive brings a killed replica back on its address.
func (r *Replica) revive() error {
	var err error
	if r.proc != nil {
		ctx, cancel := r.opContext()
		err = r.proc.Start(ctx)
		cancel()
		if err == nil {
			r.mu.Lock()
			r.down = false
			r.mu.Unlock()
		}
	} else {
		err = r.startListening()
	}
	r.syncProxy()
	if err == nil {
		r.emit("replica.up", map[string]any{"addr": r.Addr()})
	}
	return err
}

func (r *Replica) emit(typ string, attrs map[string]any) {
	o := r.up.opts
	o.Sink.Emit(event.Event{T: o.Clock.Now(), Source: "upstream", Type: typ, Target: r.name, Attrs: attrs})
}
