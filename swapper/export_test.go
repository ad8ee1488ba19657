package swapper

import "context"

// Acquire is acquire for the tests outside the package: the lifecycle
// driven without a router. It may stop busy models to make room.
func (s *Swapper) Acquire(ctx context.Context, model string) (*Lease, error) {
	return s.acquire(ctx, model, Policy{EvictBusy: true})
}
