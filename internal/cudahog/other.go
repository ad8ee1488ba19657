//go:build !linux || !cgo

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "cudahog: needs linux and a cgo build (it loads libcuda.so.1)")
	os.Exit(2)
}
