//go:build darwin

package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// openMetal finds Apple Silicon's GPU. Intel Macs are left out: their GPUs
// have VRAM of their own (or are Intel's integrated ones), and Metal's
// budget rule there is another.
func openMetal(index int) (*metalGPU, error) {
	if runtime.GOARCH != "arm64" {
		return nil, errors.New("an Intel Mac: its GPU is not read")
	}
	g := &metalGPU{index: index, model: "Apple GPU", read: readMetalSysctls}
	if _, _, err := g.read(); err != nil {
		return nil, err
	}
	if s, err := unix.Sysctl("machdep.cpu.brand_string"); err == nil && strings.TrimSpace(s) != "" {
		g.model = strings.TrimSpace(s) // "Apple M2 Max": the GPU is part of the chip
	}
	return g, nil
}

// readMetalSysctls reads hw.memsize and the GPU's wired limit. An absent
// limit (macOS before 14 named it debug.iogpu.wired_limit, in bytes; older
// ones had none) reads as 0, the system's default.
func readMetalSysctls() (memBytes, wiredLimitMB uint64, err error) {
	memBytes, err = unix.SysctlUint64("hw.memsize")
	if err != nil {
		return 0, 0, fmt.Errorf("sysctl hw.memsize: %w", err)
	}
	if n, ok := sysctlUint("iogpu.wired_limit_mb"); ok {
		return memBytes, n, nil
	}
	if n, ok := sysctlUint("debug.iogpu.wired_limit"); ok {
		return memBytes, n >> 20, nil
	}
	return memBytes, 0, nil
}

// sysctlUint reads an integer sysctl of 4 or 8 bytes; ok is false when it
// is absent or of another size. A negative value reads as 0 (unset).
func sysctlUint(name string) (uint64, bool) {
	b, err := unix.SysctlRaw(name)
	if err != nil {
		return 0, false
	}
	switch len(b) {
	case 4:
		v := int32(binary.LittleEndian.Uint32(b))
		return uint64(max(v, 0)), true
	case 8:
		v := int64(binary.LittleEndian.Uint64(b))
		return uint64(max(v, 0)), true
	}
	return 0, false
}
