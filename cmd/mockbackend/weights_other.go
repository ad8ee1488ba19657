//go:build !linux

package main

import "os"

// dropFromCache does nothing where there is no posix_fadvise (macOS):
// -weights-cold is a Linux habit.
func dropFromCache(*os.File) {}
