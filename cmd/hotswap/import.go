package main

import (
	"fmt"
	"io"
)

// importConfig is `hotswap import FORMAT FILE`: another proxy's
// configuration written as hotswap's, on stdout.
func importConfig(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "hotswap import: not built yet")
	return 2
}
