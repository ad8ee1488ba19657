package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of name in the page cache, of all its pages.
func resident(t *testing.T, name string) (n, of int) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	vec := make([]byte, (len(mem)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)),
		uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, len(vec)
}

// TestWeights: -weights is read whole as the mock loads, and /mock/stats
// says how much and how long; -weights-cold drops it from the page cache
// at exit; a file that cannot be read fails the start.
func TestWeights(t *testing.T) {
	name := filepath.Join(t.TempDir(), "w.gguf")
	const size = 4<<20 + 123
	if err := os.WriteFile(name, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	// Written pages are dirty, and the kernel drops only clean ones.
	if w, err := os.Open(name); err == nil {
		w.Sync()
		w.Close()
	}
	f := start(t, "-weights", name, "-weights-cold")
	f.waitReady()
	if st := f.stats(); st.WeightsBytes != size || st.WeightsReadS <= 0 {
		t.Errorf("stats: %d bytes read in %vs, want %d", st.WeightsBytes, st.WeightsReadS, size)
	}
	if n, of := resident(t, name); n != of {
		t.Skipf("%d of %d pages resident after the read (tmpfs?): cannot tell a drop here", n, of)
	}
	f.m.dropWeights() // what run does at exit
	if n, of := resident(t, name); n > of/4 {
		t.Errorf("%d of %d pages still resident after -weights-cold's drop", n, of)
	}

	g := start(t, "-weights", filepath.Join(t.TempDir(), "missing.gguf"))
	if code := <-g.exits; code != 1 || !strings.Contains(g.stderr.String(), "missing.gguf") {
		t.Errorf("a missing weights file: exit %d, stderr %q", code, g.stderr.String())
	}
}
