package swapper

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ramDevice is the index of system RAM in plans; GPUs use their own index.
const ramDevice = -1

// candidate is a loaded model that could be stopped to make room.
type candidate struct {
	model string
	ram   int64
	vram  int64
	gpu   int  // where its VRAM is, or ramDevice
	busy  bool // requests in flight: stopping it means draining first
}

// planInput is everything a placement decision depends on. It is a plain
// value so that choosing victims is a pure function, tested with tables.
type planInput struct {
	model string
	ram   int64 // what the model needs
	vram  int64
	// pin is the GPU the model must use, or ramDevice for any.
	pin int
	// free is the memory available per device now, reserves and pending
	// starts already taken off. GPUs absent from it do not exist.
	free map[int]int64
	// loaded are the models that may be stopped, least recently used
	// first. Pinned models and the model itself are not in it.
	loaded []candidate
}

// plan is the decision: the GPU to use (ramDevice when the model needs no
// VRAM) and the models to stop first, in order.
type plan struct {
	gpu     int
	victims []candidate
}

// choosePlan places a model. Idle models are stopped before busy ones and,
// within each, the least recently used first; a model is stopped only if
// it frees memory where the new one is short. Of the GPUs where the model
// could fit, the one needing the fewest evictions wins (then the one with
// the most memory left). If no choice fits even after stopping every
// candidate, it returns an *InsufficientMemoryError and nothing is stopped.
func choosePlan(in planInput) (plan, error) {
	order := make([]candidate, 0, len(in.loaded))
	for _, busy := range []bool{false, true} {
		for _, c := range in.loaded {
			if c.busy == busy {
				order = append(order, c)
			}
		}
	}

	gpus := []int{ramDevice}
	if in.vram > 0 {
		gpus = gpus[:0]
		if in.pin != ramDevice {
			gpus = append(gpus, in.pin)
		} else {
			for d := range in.free {
				if d != ramDevice {
					gpus = append(gpus, d)
				}
			}
			sort.Ints(gpus)
		}
	}

	var best *plan
	var bestLeft int64
	var short *InsufficientMemoryError
	for _, gpu := range gpus {
		p, left, err := planOn(in, order, gpu)
		if err != nil {
			if short == nil {
				short = err
			}
			continue
		}
		if best == nil || len(p.victims) < len(best.victims) ||
			(len(p.victims) == len(best.victims) && left > bestLeft) {
			best, bestLeft = &p, left
		}
	}
	if best != nil {
		return *best, nil
	}
	if short == nil { // no GPU at all for a model that needs VRAM
		short = &InsufficientMemoryError{Model: in.model, Device: "gpu", Need: in.vram}
	}
	return plan{}, short
}

// planOn picks victims for placing the model's VRAM on gpu. left is the
// memory the GPU (or RAM, for a model without VRAM) keeps afterwards.
func planOn(in planInput, order []candidate, gpu int) (plan, int64, *InsufficientMemoryError) {
	freeRAM := in.free[ramDevice]
	freeGPU, ok := in.free[gpu]
	if gpu != ramDevice && !ok {
		return plan{}, 0, &InsufficientMemoryError{Model: in.model, Device: deviceName(gpu), Need: in.vram}
	}
	p := plan{gpu: gpu}
	for _, c := range order {
		ramShort := in.ram > freeRAM
		gpuShort := gpu != ramDevice && in.vram > freeGPU
		if !ramShort && !gpuShort {
			break
		}
		helps := (ramShort && c.ram > 0) || (gpuShort && c.gpu == gpu && c.vram > 0)
		if !helps {
			continue
		}
		p.victims = append(p.victims, c)
		freeRAM += c.ram
		if c.gpu == gpu {
			freeGPU += c.vram
		}
	}
	if in.ram > freeRAM {
		return plan{}, 0, &InsufficientMemoryError{Model: in.model, Device: "ram", Need: in.ram,
			Free: in.free[ramDevice], Freeable: freeRAM - in.free[ramDevice]}
	}
	if gpu == ramDevice {
		return p, freeRAM - in.ram, nil
	}
	if in.vram > freeGPU {
		return plan{}, 0, &InsufficientMemoryError{Model: in.model, Device: deviceName(gpu), Need: in.vram,
			Free: in.free[gpu], Freeable: freeGPU - in.free[gpu]}
	}
	return p, freeGPU - in.vram, nil
}

func deviceName(d int) string {
	if d == ramDevice {
		return "ram"
	}
	return "gpu" + strconv.Itoa(d)
}

// InsufficientMemoryError refuses a model that cannot fit even if every
// model that may be stopped were stopped.
type InsufficientMemoryError struct {
	Model  string
	Device string // "ram", "gpu0", ...
	Need   int64
	Free   int64 // free on the device now, after reserves
	// Freeable is what stopping every model that may be stopped would add.
	Freeable int64
}

func (e *InsufficientMemoryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model %q needs %s of %s but only %s is free", e.Model, FormatBytes(e.Need), e.Device, FormatBytes(e.Free))
	if e.Freeable > 0 {
		fmt.Fprintf(&b, " (%s more if every other unpinned model were stopped)", FormatBytes(e.Freeable))
	}
	b.WriteString(", so it cannot be started")
	return b.String()
}

// FormatBytes writes n in the largest binary unit that keeps one decimal.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	units := "KMGTPE"
	v := float64(n)
	i := -1
	for (v >= unit || v <= -unit) && i < len(units)-1 {
		v /= unit
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + units[i:i+1] + "iB"
}
