//go:build !linux

package main

import "testing"

// pageCacheControl says dropCache and residentShare work here: not off
// Linux (no posix_fadvise on macOS).
const pageCacheControl = false

func dropCache(tb testing.TB, path string)             { tb.Skip("Linux only") }
func residentShare(tb testing.TB, path string) float64 { tb.Skip("Linux only"); return 0 }
