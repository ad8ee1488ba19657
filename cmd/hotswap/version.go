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
//
// Without them (go install github.com/hotswap/hotswap/cmd/hotswap@v1.2.3,
// or a plain go build), the version is the module's as Go recorded it.
var (
	version = "dev"
	commit  = ""
)

// versionLine says what this binary is: its version, commit and the build
// choices that change what it can do (cgo, and with it NVML).
func versionLine() string {
	rev, cgo, ver := commit, "unknown", version
	if info, ok := debug.ReadBuildInfo(); ok {
		ver = moduleVersion(version, info.Main.Version)
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
		"hotswap " + ver,
		"commit " + rev,
		fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH),
		"CGO_ENABLED=" + cgo,
		nvml,
	}, ", ")
}

// moduleVersion is the version stamped with -X, or else the one Go
// recorded for the main module: the tag go install fetched (v1.2.3), or
// the pseudo-version a build from a checkout gets (v0.0.0-DATE-COMMIT,
// +dirty with changes). "(devel)" and "" say nothing, and leave "dev".
func moduleVersion(stamped, module string) string {
	if stamped != "dev" || module == "" || module == "(devel)" {
		return stamped
	}
	return module
}
