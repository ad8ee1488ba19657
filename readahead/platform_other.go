//go:build !linux

package readahead

import "os"

func idlePriority()                {}
func ioPriority() int              { return 0 }
func willNeed(f *os.File, n int64) {}
