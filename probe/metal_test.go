package probe

import (
	"errors"
	"testing"
)

func TestMetalBudget(t *testing.T) {
	const mib = uint64(1) << 20
	const gib = uint64(1) << 30
	for _, tc := range []struct {
		name         string
		mem, limitMB uint64
		wantMiB      float64 // within 1 MiB: Metal's own figure rounds differently
	}{
		// Working sets that Metal reported (see metal.go for the sources).
		{"16 GiB: two thirds, as reported", 16 * gib, 0, 10922.67},
		{"32 GiB: two thirds, as reported", 32 * gib, 0, 21845.34},
		{"96 GiB: three quarters, as reported", 96 * gib, 0, 73728},
		// The rule's boundary.
		{"36 GiB: still two thirds", 36 * gib, 0, 24 * 1024},
		{"48 GiB: three quarters", 48 * gib, 0, 36 * 1024},
		// iogpu.wired_limit_mb, when set.
		{"set limit wins", 32 * gib, 26000, 26000},
		{"set limit above the default", 128 * gib, 114688, 114688},
		{"limit beyond RAM grants RAM", 16 * gib, 64000, 16 * 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := float64(metalBudget(tc.mem, tc.limitMB)) / float64(mib)
			if got < tc.wantMiB-1 || got > tc.wantMiB+1 {
				t.Errorf("metalBudget(%d GiB, %d) = %.2f MiB, want %.2f", tc.mem/gib, tc.limitMB, got, tc.wantMiB)
			}
		})
	}
}

func TestMetalDevice(t *testing.T) {
	const gib = int64(1) << 30
	g := &metalGPU{index: 0, model: "Apple M2 Max", read: func() (uint64, uint64, error) {
		return uint64(64 * gib), 0, nil
	}}
	// Free is what RAM has, within the budget.
	for _, tc := range []struct{ avail, free int64 }{{40 * gib, 40 * gib}, {60 * gib, 48 * gib}, {-1, 0}} {
		d, err := g.device(tc.avail)
		if err != nil {
			t.Fatal(err)
		}
		want := Device{Index: 0, Name: "gpu0", Model: "Apple M2 Max", Total: 48 * gib, Free: tc.free, Vendor: VendorApple, Unified: true}
		if d != want {
			t.Errorf("RAM available %d: got %+v, want %+v", tc.avail, d, want)
		}
	}
	g.read = func() (uint64, uint64, error) { return 0, 0, errors.New("no sysctl") }
	if _, err := g.device(gib); err == nil {
		t.Error("a failed sysctl read is no error")
	}
}
