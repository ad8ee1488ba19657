package router

import (
	"context"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

// The door. Everything that changes what runs reaches the swapper through
// the router: requests (Enqueue), and the intents of operators, preloads
// and reloads below. A load queues like a request and is decided by the
// same scheduler, under the same lock, on the state of that moment: which
// models have work is read when its start is decided, never from a
// snapshot taken before. An unload, a reload and a removal are passed on
// to the swapper, which decides them under its own lock. Each is bound to
// its caller's context: when it ends, the caller stops waiting.

// LoadOptions say how an operator's load comes in. The zero value loads
// as a request would (after max_wait, a busy model in the way is drained).
type LoadOptions struct {
	// Protect counts these models as busy while the load is decided: a
	// mode's models, so that loading one never stops another. A load that
	// protects models never drains a busy one.
	Protect []string
	// Refuse ends the load with *swapper.BusyError when it would have to
	// stop a busy model, rather than waiting for it to go idle (and
	// never drains one either).
	Refuse bool
	// Reason says why, for the log.
	Reason string
}

// Load brings model in as a request would (its queue, the policy and the
// memory rules, with o), and returns once it is ready, or with why not.
func (r *Router) Load(ctx context.Context, model string, o LoadOptions) error {
	t, err := r.enqueue(ctx, model, &o)
	if err != nil {
		return err
	}
	l, err := t.Next(0)
	if err != nil {
		t.Close()
		return err
	}
	l.Release()
	return nil
}

// Unload stops model's backend: requests in flight finish first (or, with
// force, are cut). Requests queued for it wait for it to come back, as in
// a swap. It returns once the backend has stopped, or when ctx ends (the
// unload goes on).
func (r *Router) Unload(ctx context.Context, model string, force bool) error {
	return r.s.b.Unload(ctx, model, force)
}

// Reconfigure applies a reloaded configuration: the swapper learns of the
// models first (so that one the router may queue for is known to it), then
// the router applies opts (see reconfigure). The channels returned are the
// removed models' (see Remove).
func (r *Router) Reconfigure(opts Options, models map[string]*config.Model, set swapper.Settings) map[string]<-chan struct{} {
	r.s.b.Reconfigure(models, set)
	return r.reconfigure(opts)
}

// Remove forgets a model a reload removed, once its queue has emptied (or
// the wait for that has been given up): requests still queued are
// refused, and its backend is drained, stopped and forgotten.
func (r *Router) Remove(ctx context.Context, model string) error {
	r.forget(model)
	return r.s.b.Remove(ctx, model)
}
