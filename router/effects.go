package router

import (
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/swapper"
)

// effects are what decisions made under the router's lock want done once
// it is let go: for now, what they have to say. The scheduler returns
// them rather than saying them, so that a slow log writer can never hold
// up the requests behind the lock, and tests read them rather than logs.
type effects struct {
	swaps []swapIn
}

// swapIn is a start the scheduler decided.
type swapIn struct {
	model  string
	d      swapper.Decision
	reason string
	waited time.Duration
	queued int
	policy string
}

// take hands the effects over and clears them.
func (fx *effects) take() effects {
	out := *fx
	*fx = effects{}
	return out
}

// do carries the effects out. Call it without the lock.
func (fx effects) do(log *zap.Logger) {
	for _, s := range fx.swaps {
		log.Info("swapping in", zap.String("model", s.model), zap.Strings("evicting", s.d.Victims),
			zap.Strings("busy", s.d.Busy), zap.String("reason", s.reason), zap.Duration("waited", s.waited),
			zap.Int("queued", s.queued), zap.String("policy", s.policy))
	}
}
