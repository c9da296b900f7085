package faults_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
)

// spawnProc is a replica process that records whether it was closed.
type spawnProc struct {
	addr   string
	closed atomic.Bool
}

func (p *spawnProc) Addr() string                    { return p.addr }
func (p *spawnProc) Kill(context.Context) error      { return nil }
func (p *spawnProc) Start(context.Context) error     { return nil }
func (p *spawnProc) Pause(context.Context) error     { return nil }
func (p *spawnProc) Resume(context.Context) error    { return nil }
func (p *spawnProc) Close(ctx context.Context) error { p.closed.Store(true); return nil }

// Containerised replicas start side by side: every spawn here waits until
// all of them are under way, which one after another never happens. They
// keep their index order and names.
func TestSpawnedReplicasStartConcurrently(t *testing.T) {
	const n = 5
	var entered sync.WaitGroup
	entered.Add(n)
	all := make(chan struct{})
	go func() { entered.Wait(); close(all) }()
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: n, Container: &faults.ContainerConfig{},
		Spawn: func(ctx context.Context, i int, name string) (faults.Process, error) {
			entered.Done()
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				return nil, errors.New("the other replicas never started alongside")
			}
			return &spawnProc{addr: fmt.Sprintf("127.0.0.1:%d", 1000+i)}, nil
		}}, faults.Options{})
	if err := up.StartContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	rs := up.Replicas()
	if len(rs) != n {
		t.Fatalf("%d replicas", len(rs))
	}
	for i, r := range rs {
		if r.Index() != i || r.Name() != fmt.Sprintf("api[%d]", i) || r.Addr() != fmt.Sprintf("127.0.0.1:%d", 1000+i) {
			t.Errorf("replica %d: index %d, name %s, addr %s", i, r.Index(), r.Name(), r.Addr())
		}
	}
}

// When one replica fails to start, the start fails with its error, the
// replicas not yet begun are not started, and every one that did start
// is closed again: nothing is left running.
func TestSpawnFailureClosesTheOthers(t *testing.T) {
	const n = 12 // more than start at once
	var mu sync.Mutex
	var procs []*spawnProc
	var calls atomic.Int32
	boom := errors.New("boom")
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: n, Container: &faults.ContainerConfig{},
		Spawn: func(ctx context.Context, i int, name string) (faults.Process, error) {
			calls.Add(1)
			if i == 2 {
				time.Sleep(20 * time.Millisecond) // the others of its batch are up by now
				return nil, fmt.Errorf("replica %s: %w", name, boom)
			}
			if i >= faults.MaxConcurrentSpawns {
				<-ctx.Done() // a later batch waits on the failure: cut short
				return nil, ctx.Err()
			}
			p := &spawnProc{addr: "127.0.0.1:1"}
			mu.Lock()
			procs = append(procs, p)
			mu.Unlock()
			return p, nil
		}}, faults.Options{})
	err := up.StartContext(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the failing replica's", err)
	}
	if len(procs) != faults.MaxConcurrentSpawns-1 {
		t.Errorf("%d replicas started beside the failing one, want %d", len(procs), faults.MaxConcurrentSpawns-1)
	}
	for i, p := range procs {
		if !p.closed.Load() {
			t.Errorf("started replica %d was not closed", i)
		}
	}
	if c := calls.Load(); c > n {
		t.Errorf("%d spawns for %d replicas", c, n)
	}
}

// blockingProc is a replica process whose Close waits until every
// replica's Close is under way: one after another that never happens.
type blockingProc struct {
	spawnProc
	entered *sync.WaitGroup
	all     chan struct{}
	err     error
}

func (p *blockingProc) Close(ctx context.Context) error {
	p.entered.Done()
	select {
	case <-p.all:
	case <-time.After(10 * time.Second):
		return errors.New("the other replicas were never closed alongside")
	}
	p.closed.Store(true)
	return p.err
}

// Containerised replicas stop side by side too, each one's error kept:
// one after another, 12 containers' stops took 1–1.5 s.
func TestSpawnedReplicasCloseConcurrently(t *testing.T) {
	const n = 5
	var entered sync.WaitGroup
	entered.Add(n)
	all := make(chan struct{})
	go func() { entered.Wait(); close(all) }()
	var mu sync.Mutex
	var procs []*blockingProc
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: n, Container: &faults.ContainerConfig{},
		Spawn: func(ctx context.Context, i int, name string) (faults.Process, error) {
			p := &blockingProc{spawnProc: spawnProc{addr: fmt.Sprintf("127.0.0.1:%d", 1000+i)}, entered: &entered, all: all}
			if i == 3 {
				p.err = fmt.Errorf("replica %d would not stop", i)
			}
			mu.Lock()
			procs = append(procs, p)
			mu.Unlock()
			return p, nil
		}}, faults.Options{})
	if err := up.StartContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err == nil || err.Error() != "replica 3 would not stop" {
		t.Errorf("Close: %v, want replica 3's error alone", err)
	}
	for i, p := range procs {
		if !p.closed.Load() {
			t.Errorf("replica %d not closed", i)
		}
	}
}
