package swapper

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/state"
)

// refresher looks at memory every RefreshInterval: loading backends grow,
// ready ones grow with their caches, and other programs come and go.
// Decisions go by what it last saw; each look tells the watchers, so that a
// decision waiting for memory is made again.
func (s *Swapper) refresher() {
	defer s.wg.Done()
	if s.opts.Memory == nil {
		return
	}
	for sleep(s, s.opts.RefreshInterval) {
		s.refresh()
	}
}

// refresh measures the backends due (every loading one, ready ones not
// measured for MeasureInterval, and also), then the devices, and stores
// both in the snapshot at once. Measuring the backends first means one
// that grows in between is counted twice, never missed; storing them
// together means no decision sees a measurement newer than the devices'
// figures (which would count its memory as free: its reservation gone,
// its use not yet seen). A load that began during the look is measured
// too, and the devices read again, so that its memory is not counted both
// by the devices and by its reservation. Only the measuring is I/O, and it
// is done without the lock.
func (s *Swapper) refresh(also ...due) {
	if s.opts.Memory == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	now := s.clock.Now()
	s.mu.Lock()
	// Looks can overlap (a start's and the periodic one): each is
	// numbered as it begins, and an older one never overwrites a newer.
	s.looks++
	look := s.looks
	took := map[*instance]probe.Usage{}
	listed := map[*instance]bool{} // measured in this look, or about to be
	for _, d := range also {
		listed[d.inst] = true
	}
	todo := append(also, s.unmeasuredLocked(listed, func(b *backend) bool {
		return b.state == Ready && now.Sub(b.cur.measuredAt) >= s.opts.MeasureInterval
	})...)
	s.unlock()
	mem := s.opts.Memory
	for tries := 0; ; tries++ {
		for _, d := range todo {
			listed[d.inst] = true
			if u, ok := s.measureInstance(ctx, d); ok {
				took[d.inst] = u
			}
		}
		s.mu.Lock()
		spawns := s.spawnGen
		s.unlock()
		devs, err := mem.Devices(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("looking at memory", zap.Error(err))
			}
			return
		}
		s.mu.Lock()
		// A process started during the read is in the devices' figures
		// but not yet an instance: its start's reservation would count it
		// again. Look again.
		unsettled := s.spawnGen != spawns || s.spawning > 0
		if todo = s.unmeasuredLocked(listed, nil); (len(todo) > 0 || unsettled) && tries < 3 {
			s.unlock()
			continue
		}
		if !unsettled && look > s.snap.look {
			s.snap = newSnapshot(devs, mem.UnifiedMemory())
			s.snap.at, s.snap.look = s.clock.Now(), look
			for inst, u := range took {
				if look > inst.look {
					inst.usage, inst.measured, inst.measuredAt, inst.look = u, true, s.snap.at, look
				}
			}
			// This look began after these had gone: it saw them free.
			s.unseen = slices.DeleteFunc(s.unseen, func(f unseenFree) bool { return f.mark < look })
			s.changedLocked(nil)
		}
		s.unlock()
		return
	}
}

// unmeasuredLocked lists the running backends not listed in this look
// that are loading or were never measured (a measurement can be dropped
// with its look, and a backend leaving is not measured on its own; unless
// measured it counts for its need on top of what the devices show), and
// the ready ones that also() says are due. Only ready ones teach.
func (s *Swapper) unmeasuredLocked(listed map[*instance]bool, also func(*backend) bool) []due {
	var todo []due
	for _, b := range s.backends {
		inst := b.cur
		if inst == nil || listed[inst] {
			continue
		}
		switch {
		case b.state == Starting || !inst.measured:
			todo = append(todo, due{b: b, inst: inst, learn: b.state == Ready || b.state == Asleep, asleep: b.state == Asleep})
		case also != nil && also(b):
			todo = append(todo, due{b: b, inst: inst, learn: true})
		}
	}
	return todo
}

// due is a backend to measure, and whether its measure teaches its
// footprint.
type due struct {
	b     *backend
	inst  *instance
	learn bool
	// asleep: it was measured asleep, and teaches what it holds asleep.
	asleep bool
}

// usage measures inst, b's backend: its process tree, or, where the
// model names a cgroup (a backend in a container, outside hotswap's
// process tree), the cgroup's RAM and the GPU memory of the processes in
// it (see probe.CgroupUsage).
func (s *Swapper) usage(ctx context.Context, m *config.Model, inst *instance) (probe.Usage, error) {
	if m.Cgroup == "" {
		return s.opts.Memory.Usage(ctx, inst.proc.Pid())
	}
	return probe.CgroupUsage(ctx, s.opts.Memory, probe.CgroupRoot, expandCgroup(m, inst.port))
}

// expandCgroup is m's cgroup with ${MODEL} (and ${PORT}) expanded.
func expandCgroup(m *config.Model, port int) string {
	return strings.NewReplacer(config.PlaceholderModel, m.ID, config.PlaceholderPort, strconv.Itoa(port)).Replace(m.Cgroup)
}

// measureInstance measures d's backend and, with d.learn, raises its
// model's learned footprint if it grew. The caller stores the usage with
// the devices' figures.
func (s *Swapper) measureInstance(ctx context.Context, d due) (probe.Usage, bool) {
	b := d.b
	u, err := s.usage(ctx, b.model, d.inst)
	if err != nil {
		if errors.Is(err, probe.ErrNoCgroup) && d.learn && !d.inst.cgroupWarned.Swap(true) {
			// Ready, yet not there: the path is likely wrong. Until it
			// is found the backend counts for its need.
			s.log.Warn("the backend's cgroup is not there; it is planned with its need until found",
				zap.String("model", b.model.ID), zap.Error(err))
		} else if !errors.Is(err, probe.ErrNoProcess) && !errors.Is(err, probe.ErrNoCgroup) {
			s.log.Debug("measuring backend", zap.String("model", b.model.ID), zap.Error(err))
		}
		return u, false
	}
	if !d.learn {
		return u, true
	}
	if d.asleep {
		s.learnAsleep(b, u)
		return u, true
	}
	// Learned for the command this run was started with.
	if key := state.Key(b.model); s.opts.Footprints.Observe(key, u.RAM, u.TotalVRAM()) {
		fp := s.opts.Footprints.Footprint(key)
		s.opts.Events.Publish(events.Event{Type: events.Footprint, Model: b.model.ID,
			Data: map[string]any{"ram": fp.RAM, "vram": fp.VRAM}})
		s.log.Info("learned footprint", zap.String("model", b.model.ID),
			zap.String("ram", config.FormatSize(fp.RAM)), zap.String("vram", config.FormatSize(fp.VRAM)),
			zap.String("declared_ram", config.FormatSize(b.model.Memory.RAM)),
			zap.String("declared_vram", config.FormatSize(b.model.Memory.VRAM)))
		if err := s.opts.Footprints.Save(); err != nil {
			s.log.Warn("saving footprints", zap.Error(err))
		}
	}
	return u, true
}
