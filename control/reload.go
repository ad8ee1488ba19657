package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// ReloadResult is what a reload changed.
type ReloadResult struct {
	config.Diff
	// Path is the file read.
	Path string `json:"path"`
}

// Reload reads the configuration file again and applies it. An invalid
// file, or one naming a program that cannot run, changes nothing: the
// error lists every problem (*config.ValidationError). Otherwise:
//   - added models are known at once (and started, if preload);
//   - a removed model takes no new requests; those queued and in flight
//     are served, then it stops and is forgotten (in the background);
//   - a model whose command, environment, upstream, health path, memory
//     or GPU changed restarts once idle; its other settings apply at once;
//   - keys, scheduling, memory reserves and ttls apply at once; the
//     settings in NeedsRestart keep their old values until hotswap
//     restarts.
func (c *Controller) Reload(ctx context.Context) (ReloadResult, error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	if c.ctx.Err() != nil {
		return ReloadResult{}, swapper.ErrClosed
	}
	if c.opts.Path == "" {
		return ReloadResult{}, fmt.Errorf("%w: hotswap was not started from a file", ErrNoConfigFile)
	}
	// A model whose program cannot run is refused with the file's other
	// problems: applied, it would stop a working backend for one that
	// can only fail to start.
	next, err := config.LoadRunnable(c.opts.Path)
	if err != nil {
		c.log.Warn("reload refused; the configuration in use is unchanged", zap.Error(err))
		return ReloadResult{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.opts.Override != nil {
		c.opts.Override(next)
	}
	old := c.config()
	diff := config.Compare(old, next)
	next.KeepFixed(old) // what the first configuration built stays

	// Through the door: the swapper learns of new models before the
	// router can queue for them, and the proxy before clients can name
	// them.
	emptied := c.opts.Door.Reconfigure(router.ConfigOptions(next, nil), next.Models, swapper.Settings{
		ReserveRAM: next.Memory.ReserveRAM, ReserveVRAM: next.Memory.ReserveVRAM, LimitRAM: next.Memory.LimitRAM,
		CooldownMax: next.Memory.CooldownMax, DrainTimeout: next.Scheduling.DrainTimeout,
		Eviction: next.Scheduling.Eviction,
	})
	c.cfg.Store(next)
	for _, f := range c.opts.OnReload {
		f(next)
	}
	for id, ch := range emptied {
		c.background.Add(1)
		go c.remove(id, ch, next.Scheduling.DrainTimeout)
	}
	for _, id := range diff.Added {
		if next.Models[id].Preload {
			c.background.Add(1)
			go func() {
				defer c.background.Done()
				if err := c.opts.Door.Load(c.ctx, id, router.LoadOptions{Reason: "preload"}); err != nil && c.ctx.Err() == nil {
					c.log.Warn("preload failed", zap.String("model", id), zap.Error(err))
				}
			}()
		}
	}
	c.log.Info("configuration reloaded", zap.String("path", c.opts.Path), zap.Strings("added", diff.Added),
		zap.Strings("removed", diff.Removed), zap.Strings("restart", diff.Restart), zap.Strings("changed", diff.Changed),
		zap.Strings("needs_restart", diff.NeedsRestart))
	c.opts.Events.Publish(events.Event{Type: events.Reload, Data: map[string]any{
		"added": diff.Added, "removed": diff.Removed, "restart": diff.Restart, "changed": diff.Changed,
		"needs_restart": diff.NeedsRestart}})
	return ReloadResult{Diff: diff, Path: c.opts.Path}, nil
}

// remove retires a model a reload removed: once its queue has been served
// (or the drain timeout has passed), it is drained, stopped and forgotten.
// A reload that adds it back lets emptied go at once; the swapper and the
// router then keep it, as they forget only models their configuration no
// longer has.
func (c *Controller) remove(id string, emptied <-chan struct{}, drain time.Duration) {
	defer c.background.Done()
	t := c.clock.NewTimer(drain)
	defer t.Stop()
	select {
	case <-emptied:
	case <-t.C():
		c.log.Warn("requests still queued for a removed model are refused", zap.String("model", id))
	case <-c.ctx.Done():
		return
	}
	if err := c.opts.Door.Remove(c.ctx, id); err != nil && c.ctx.Err() == nil {
		c.log.Warn("removing model", zap.String("model", id), zap.Error(err))
	}
}

// ErrInvalidConfig refuses a reload whose file cannot be read or is not
// valid; it wraps the reasons (every problem, see config.ValidationError).
var ErrInvalidConfig = errors.New("the new configuration was refused; the one in use is unchanged")

// ErrNoConfigFile refuses a reload when there is no file to read.
var ErrNoConfigFile = errors.New("no configuration file to reload")
