package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hotswap/hotswap/llamaswap"
)

const importUsage = `usage: hotswap import llama-swap FILE > hotswap.yaml

Reads llama-swap's configuration FILE ("-" for stdin) and writes the hotswap
configuration that does the same to stdout. Settings hotswap has no place
for, or does its own way, are kept as comments starting "not imported:".
Check the result with: hotswap check -config hotswap.yaml`

// importConfig is `hotswap import FORMAT FILE`: another proxy's
// configuration written as hotswap's, on stdout.
func importConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintln(stderr, importUsage)
		return 0
	}
	if len(args) != 2 {
		fmt.Fprintln(stderr, importUsage)
		return 2
	}
	if args[0] != "llama-swap" {
		fmt.Fprintf(stderr, "hotswap import: unknown format %q (hotswap imports llama-swap)\n", args[0])
		return 2
	}
	path := args[1]
	var (
		src  []byte
		err  error
		name = filepath.Base(path)
	)
	if path == "-" {
		src, err = io.ReadAll(os.Stdin)
		path, name = "stdin", ""
	} else {
		src, err = os.ReadFile(path)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hotswap import: %v\n", err)
		return 1
	}
	res, err := llamaswap.Convert(src, llamaswap.Options{Source: name})
	if err != nil {
		var lerr *llamaswap.Error
		if errors.As(err, &lerr) && len(lerr.Problems) > 1 {
			fmt.Fprintf(stderr, "hotswap import: %s: %d problems:\n%v\n", path, len(lerr.Problems), err)
		} else {
			fmt.Fprintf(stderr, "hotswap import: %s: %v\n", path, err)
		}
		return 1
	}
	// All of it or nothing: the file was read whole before this write.
	if _, err := stdout.Write(res.YAML); err != nil {
		fmt.Fprintf(stderr, "hotswap import: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "hotswap import: %s: %d models; %d settings are comments starting %q: read them, then run hotswap check\n",
		path, res.Models, res.NotImported, llamaswap.NotImportedMark)
	return 0
}
