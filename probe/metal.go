package probe

import (
	"fmt"
	"strconv"
)

// Apple Silicon's GPU shares RAM with the CPU, but Metal lets the GPU wire
// only part of it: MTLDevice.recommendedMaxWorkingSetSize, which is what
// llama.cpp's Metal backend reports as the device's memory. Reading that
// needs Objective-C (cgo); the pure-Go probe computes it from the same
// inputs instead:
//
//   - iogpu.wired_limit_mb, when set above 0 (sudo sysctl
//     iogpu.wired_limit_mb=N, macOS 14 and later), is the limit, in MiB:
//     Metal's working set follows it, in both directions (measured in
//     AlexsJones/llmfit#754; llama-server lists a Mac set to 26000 as
//     "26000 MiB", Andyyyy64/whichllm#152).
//   - 0, the default, leaves macOS's own rule: two thirds of RAM up to
//     36 GiB, three quarters above. Reported working sets that fit it:
//     10922.67 MB on 16 GiB (abetlen/llama-cpp-python#687), 21845.34 MB on
//     32 GiB (ollama/ollama#434), 73728 MB on 96 GiB (ggml-org/llama.cpp#3213),
//     about 10.67 GB on a 16 GB M4 (exo-explore/exo#1672). The 36 GiB
//     boundary is the commonly stated one; no report above pins it
//     between 32 and 96 GiB. macOS 26 grants more on large Macs (107.52 GiB
//     of 128 GiB measured on two machines, antirez/ds4#890 and #893), so
//     on it this rule errs low, which costs an eviction, never a failed load.
//
// Usage cannot tell a process's Metal memory apart from the rest: Metal
// buffers on Apple Silicon are in the process's resident memory, so a
// backend's footprint there is its RSS, counted as RAM.

// metalBudget is the GPU's budget in bytes on a Mac with memBytes of RAM
// (hw.memsize) and the iogpu.wired_limit_mb sysctl at wiredLimitMB.
func metalBudget(memBytes, wiredLimitMB uint64) int64 {
	const gib = 1 << 30
	if wiredLimitMB > 0 {
		// A limit above RAM grants nothing more than RAM.
		return int64(min(wiredLimitMB<<20, memBytes))
	}
	if memBytes <= 36*gib {
		return int64(memBytes / 3 * 2)
	}
	return int64(memBytes / 4 * 3)
}

// metalGPU is Apple Silicon's GPU, seen through its budget.
type metalGPU struct {
	index int
	model string // e.g. "Apple M2 Max"
	// read returns hw.memsize and iogpu.wired_limit_mb now: the limit can
	// be changed at any time with sysctl.
	read func() (memBytes, wiredLimitMB uint64, err error)
}

// device is the GPU now. ramAvail is what RAM has available: Metal's
// memory is RAM, and how much of the budget is in use is not something
// sysctl tells, so free is what RAM still has, within the budget.
func (g *metalGPU) device(ramAvail int64) (Device, error) {
	memBytes, limit, err := g.read()
	if err != nil {
		return Device{}, fmt.Errorf("Metal budget: %w", err)
	}
	budget := metalBudget(memBytes, limit)
	return Device{
		Index:   g.index,
		Name:    "gpu" + strconv.Itoa(g.index),
		Model:   g.model,
		Total:   budget,
		Free:    max(0, min(ramAvail, budget)),
		Vendor:  VendorApple,
		Unified: true,
	}, nil
}
