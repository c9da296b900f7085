package faults

import (
	"context"
	"errors"
	"fmt"
)

// ErrLastReplica is returned by RemoveReplica when one replica is left: an
// autoscaler's minimum is at least one.
var ErrLastReplica = errors.New("the last replica cannot be removed")

// RemoveReplica takes the newest replica out of the upstream and shuts it
// down the way a scaled-down pod goes: new connections are refused at once,
// requests in flight are finished (until ctx ends, then their connections
// are closed). Take it out of the gateway's targets first, as Kubernetes
// removes a pod from its endpoints before stopping it.
//
// The newest replica goes first, as a StatefulSet scales down; the replica
// indexes faults name stay stable for the replicas that remain.
func (u *Upstream) RemoveReplica(ctx context.Context) (*Replica, error) {
	r, err := u.DetachReplica()
	if err != nil {
		return nil, err
	}
	return r, r.Drain(ctx)
}

// DetachReplica takes the newest replica out of the upstream without
// stopping it, so a caller can take it out of a balancer and then Drain it
// in the background while the replica count is already right.
func (u *Upstream) DetachReplica() (*Replica, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.replicas) <= 1 {
		return nil, fmt.Errorf("upstream %s: %w", u.cfg.Name, ErrLastReplica)
	}
	r := u.replicas[len(u.replicas)-1]
	u.replicas = u.replicas[:len(u.replicas)-1]
	return r, nil
}

// Drain stops accepting, lets in-flight requests finish until ctx ends,
// then closes what is left.
func (r *Replica) Drain(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err := r.srv.Shutdown(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil // requests still running when the grace period ended are cut, as a pod's are
	}
	return errors.Join(err, r.srv.Close())
}
