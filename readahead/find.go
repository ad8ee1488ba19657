// Package readahead warms the page cache with a model's weight files while
// its start waits (victims draining, memory cooling down, a batch's
// max_wait), so that the backend, once spawned, loads them from memory
// rather than from an idle disk.
//
// Find says which files those are; Read reads them, at idle I/O priority,
// within a byte budget, until done or called off.
package readahead

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Exts are the endings of weight files.
var Exts = []string{".gguf", ".safetensors", ".bin", ".onnx", ".pt"}

// split is a part of a split GGUF: name-00001-of-00003.gguf.
var split = regexp.MustCompile(`^(.*)-(\d{5})-of-(\d{5})\.gguf$`)

// Find returns a model's weight files, in order and each once.
//
// When files (the model's files key) is not empty it decides alone: each
// entry is a path or a glob; a file it names is taken whatever its name,
// a directory stands for the weight files in it. Otherwise the files are
// found in argv: every argument, and the value of every --flag=value,
// that names an existing file with a weight ending (Exts), or an existing
// directory (vLLM's model directory), whose weight files are taken.
// Directories are read one level deep, not recursively: a model directory
// keeps its shards at its top, and a recursive walk of an argument like
// --download-dir could read a whole model store. One part of a split GGUF
// (-00001-of-00003.gguf) brings all its parts that exist. What does not
// exist is left out.
func Find(argv, files []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	take := func(p string, any bool) {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
		case fi.IsDir():
			for _, f := range inDir(p) {
				add(f)
			}
		case fi.Mode().IsRegular() && (any || isWeight(p)):
			for _, f := range parts(p) {
				add(f)
			}
		}
	}
	if len(files) > 0 {
		for _, pat := range files {
			matches, err := filepath.Glob(pat)
			if err != nil || matches == nil {
				matches = []string{pat}
			}
			for _, m := range matches {
				take(m, true)
			}
		}
		return out
	}
	for _, a := range argv {
		if strings.HasPrefix(a, "-") {
			if _, v, ok := strings.Cut(a, "="); ok {
				take(v, false)
			}
			continue
		}
		take(a, false)
	}
	return out
}

func isWeight(p string) bool {
	low := strings.ToLower(p)
	for _, e := range Exts {
		if strings.HasSuffix(low, e) {
			return true
		}
	}
	return false
}

// inDir lists the weight files directly in dir, sorted by name.
func inDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && isWeight(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// parts returns every existing part of the split GGUF p belongs to, or p.
func parts(p string) []string {
	m := split.FindStringSubmatch(p)
	if m == nil {
		return []string{p}
	}
	var n int
	fmt.Sscanf(m[3], "%d", &n)
	var out []string
	for i := 1; i <= n; i++ {
		q := fmt.Sprintf("%s-%05d-of-%s.gguf", m[1], i, m[3])
		if fi, err := os.Stat(q); err == nil && fi.Mode().IsRegular() {
			out = append(out, q)
		}
	}
	if len(out) == 0 {
		return []string{p}
	}
	return out
}
