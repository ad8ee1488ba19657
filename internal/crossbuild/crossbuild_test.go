package crossbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// goCmd runs the go tool at the module's root for GOOS=goos,
// GOARCH=arch, without cgo, and fails the test with its output if it
// fails.
func goCmd(t *testing.T, goos, arch string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+arch, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=%s GOARCH=%s CGO_ENABLED=0 go %v: %v\n%s", goos, arch, args, err, out)
	}
}

// TestOtherTargetsBuild: hotswap's commands build for macOS on Apple
// silicon and on Intel, and go vet (tests included) passes for the whole
// module as macOS sees it: the darwin-only files (the guard's kqueue
// watch, Metal) compile and are checked. It uses the build cache, so it
// costs seconds after the first run.
func TestOtherTargetsBuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool on PATH to cross-build with")
	}
	for _, arch := range []string{"arm64", "amd64"} {
		t.Run(arch, func(t *testing.T) {
			t.Parallel()
			goCmd(t, "darwin", arch, "build", "-o", t.TempDir()+string(filepath.Separator), "./cmd/...")
		})
	}
	t.Run("vet", func(t *testing.T) {
		t.Parallel()
		goCmd(t, "darwin", "arm64", "vet", "./...")
	})
	// The release's other target besides this machine's: linux on arm64
	// (make dist builds it with cgo and the NVIDIA probe, given the cross
	// compiler; here, without, so that every target builds in every run).
	t.Run("linux-arm64", func(t *testing.T) {
		t.Parallel()
		goCmd(t, "linux", "arm64", "build", "-o", t.TempDir()+string(filepath.Separator), "./cmd/...")
	})
}
