package readahead

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestIdlePriority(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	got := make(chan [2]int, 1)
	go func() {
		runtime.LockOSThread()
		before := ioPriority()
		idlePriority()
		got <- [2]int{before, ioPriority()}
	}()
	r := <-got
	if r[1]>>ioprioClassShift != ioprioClassIdle {
		t.Skipf("ioprio_set had no effect here (before %#x, after %#x)", r[0], r[1])
	}
	if p := ioPriority(); p>>ioprioClassShift == ioprioClassIdle {
		t.Errorf("the test's own thread went idle too (%#x)", p)
	}
}

// TestReadWarmsCache drops a file from the page cache, reads it ahead,
// and checks with mincore that its pages are resident.
func TestReadWarmsCache(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	dir := t.TempDir()
	name := touch(t, filepath.Join(dir, "a.gguf"), 4*Chunk)
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Skipf("fadvise: %v", err)
	}
	mem, err := unix.Mmap(fd, 0, 4*Chunk, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	resident := func() (n, of int) {
		vec := make([]byte, (len(mem)+os.Getpagesize()-1)/os.Getpagesize())
		// x/sys has no Mincore wrapper in the version go.mod holds.
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)),
			uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		for _, v := range vec {
			n += int(v & 1)
		}
		return n, len(vec)
	}
	if n, of := resident(); n > of/4 {
		t.Skipf("POSIX_FADV_DONTNEED left %d of %d pages resident (tmpfs?): cannot tell a read-ahead here", n, of)
	}
	if p := Read(context.Background(), []string{name}, 1<<40, nil); p.Bytes != 4*Chunk {
		t.Fatalf("Read = %+v", p)
	}
	if n, of := resident(); n != of {
		t.Errorf("after the read-ahead %d of %d pages are resident", n, of)
	}
}
