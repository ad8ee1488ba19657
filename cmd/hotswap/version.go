package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/hotswap/hotswap/probe"
)

// Set at build time by the Makefile:
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=abc1234"
var (
	version = "dev"
	commit  = ""
)

// versionLine says what this binary is: its version, commit and the build
// choices that change what it can do (cgo, and with it NVML).
func versionLine() string {
	rev, cgo := commit, "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value[:min(len(s.Value), 12)]
			case s.Key == "CGO_ENABLED":
				cgo = s.Value
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	nvml := "NVML (GPU memory) compiled in"
	if !probe.NVMLBuilt {
		nvml = "no NVML (GPU memory not read; VRAM needs count against RAM)"
	}
	return strings.Join([]string{
		"hotswap " + version,
		"commit " + rev,
		fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH),
		"CGO_ENABLED=" + cgo,
		nvml,
	}, ", ")
}
