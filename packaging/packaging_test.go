package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// The archive the tests install: HOTSWAP_DIST_ARCHIVE (make dist-test
// names dist/'s linux-amd64 one, with its SHA256SUMS beside it), or one
// built here as packaging/dist.sh lays it out, from this checkout's
// hotswap and mock backend (hotswap-bench is a stand-in: it is only
// copied).
var (
	archiveOnce sync.Once
	archivePath string
	archiveErr  error
)

func archive(t *testing.T) string {
	t.Helper()
	archiveOnce.Do(func() {
		if p := os.Getenv("HOTSWAP_DIST_ARCHIVE"); p != "" {
			archivePath, archiveErr = filepath.Abs(p)
			return
		}
		archivePath, archiveErr = buildArchive()
	})
	if archiveErr != nil {
		t.Fatal(archiveErr)
	}
	return archivePath
}

var scratch string // removed by TestMain

func TestMain(m *testing.M) {
	code := m.Run()
	if scratch != "" {
		os.RemoveAll(scratch)
	}
	os.Exit(code)
}

func buildArchive() (string, error) {
	var err error
	if scratch, err = os.MkdirTemp("", "hotswap-packaging-test"); err != nil {
		return "", err
	}
	bins := filepath.Join(scratch, "bins")
	if err := os.Mkdir(bins, 0o755); err != nil {
		return "", err
	}
	hs, mock, err := mocktest.BuildPair(bins)
	if err != nil {
		return "", err
	}
	const name = "hotswap-test-linux-amd64"
	files := []struct {
		name, from string
		data       []byte
		mode       int64
	}{
		{name: "bin/hotswap", from: hs, mode: 0o755},
		{name: "bin/mockbackend", from: mock, mode: 0o755},
		{name: "bin/hotswap-bench", data: []byte("#!/bin/sh\necho stand-in\n"), mode: 0o755},
		{name: "config.yaml", from: "../config.yaml", mode: 0o644},
		{name: "README.md", from: "../README.md", mode: 0o644},
		{name: "hotswap.service", from: "hotswap.service", mode: 0o644},
		{name: "install.sh", from: "install.sh", mode: 0o755},
	}
	var buf bytes.Buffer
	// Stored, not compressed: deflating the binaries takes half a minute
	// under the race detector.
	gz, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(gz)
	for _, f := range files {
		data := f.data
		if f.from != "" {
			if data, err = os.ReadFile(f.from); err != nil {
				return "", err
			}
		}
		hdr := &tar.Header{Name: name + "/" + f.name, Mode: f.mode, Size: int64(len(data)), ModTime: time.Now()}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	dir := filepath.Join(scratch, "dist")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".tar.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	sums := fmt.Sprintf("%s  %s\n", hex.EncodeToString(sum[:]), name+".tar.gz")
	return path, os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o644)
}

// install runs install.sh with args and the archive last.
func install(t *testing.T, archive string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", append(append([]string{"install.sh"}, args...), archive)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustExist(t *testing.T, path string, executable bool) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if executable && fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable: %v", path, fi.Mode())
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Programs and documentation only, into a packaging root.
func TestInstallNoService(t *testing.T) {
	t.Parallel()
	a := archive(t)
	root := t.TempDir()
	out, err := install(t, a, "--root", root, "--no-service")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "verified ") || strings.Contains(out, "NOT verified") {
		t.Errorf("not verified against SHA256SUMS:\n%s", out)
	}
	for _, b := range []string{"hotswap", "hotswap-bench", "mockbackend"} {
		mustExist(t, filepath.Join(root, "usr/local/bin", b), true)
	}
	mustExist(t, filepath.Join(root, "usr/local/share/doc/hotswap/README.md"), false)
	mustExist(t, filepath.Join(root, "usr/local/share/hotswap/hotswap.service"), false)
	example := read(t, filepath.Join(root, "usr/local/share/hotswap/config.example.yaml"))
	if !strings.Contains(example, "cmd: /usr/local/bin/mockbackend -port") || strings.Contains(example, " bin/mockbackend") {
		t.Errorf("the example's mock models do not run /usr/local/bin/mockbackend:\n%s", example)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); !os.IsNotExist(err) {
		t.Errorf("--no-service wrote etc/: %v", err)
	}
	v, err := exec.Command(filepath.Join(root, "usr/local/bin/hotswap"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(v), "hotswap ") {
		t.Fatalf("hotswap version: %v: %s", err, v)
	}
	t.Logf("%s", bytes.TrimSpace(v))
}

// The service: the unit (ExecStart in the prefix) and /etc/hotswap, whose
// config is written once and then left alone.
func TestInstallService(t *testing.T) {
	t.Parallel()
	a := archive(t)
	root := t.TempDir()
	out, err := install(t, a, "--root", root, "--prefix", "/opt/hotswap")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "no user created") {
		t.Errorf("does not say that --root creates no user:\n%s", out)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/hotswap.service")
	unit := read(t, unitPath)
	if !strings.Contains(unit, "\nExecStart=/opt/hotswap/bin/hotswap -config /etc/hotswap/config.yaml\n") {
		t.Errorf("ExecStart not in the prefix:\n%s", unit)
	}
	configPath := filepath.Join(root, "etc/hotswap/config.yaml")
	if c := read(t, configPath); !strings.Contains(c, "cmd: /opt/hotswap/bin/mockbackend -port") {
		t.Errorf("config's mock models do not run /opt/hotswap/bin/mockbackend:\n%s", c)
	}
	if err := os.WriteFile(configPath, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := install(t, a, "--root", root, "--prefix", "/opt/hotswap"); err != nil {
		t.Fatalf("again: %v\n%s", err, out)
	} else if !strings.Contains(out, "kept ") {
		t.Errorf("again: does not say the config was kept:\n%s", out)
	}
	if c := read(t, configPath); c != "# mine\n" {
		t.Errorf("an existing config was replaced:\n%s", c)
	}
	// The installed unit as systemd reads it, its program where --root put it.
	verifyUnit(t, strings.Replace(unit, "ExecStart=/opt/hotswap/", "ExecStart="+root+"/opt/hotswap/", 1))
}

// The unit as the repository has it.
func TestUnitVerifies(t *testing.T) {
	t.Parallel()
	unit := read(t, "hotswap.service")
	exe, err := os.Executable() // any program: verify checks ExecStart runs
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(unit, "\nExecStart=/usr/local/bin/hotswap ") {
		t.Fatal("install.sh rewrites ExecStart=/usr/local/bin/hotswap, which the unit no longer has")
	}
	for _, want := range []string{"KillMode=mixed", "TimeoutStopSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=hotswap"} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("the unit has no %s", want)
		}
	}
	// These close the GPUs' device nodes (/dev/nvidia*, /dev/dri, /dev/kfd).
	for _, bad := range []string{"PrivateDevices=", "DeviceAllow=", "DevicePolicy=", "ProtectClock=", "MemoryDenyWriteExecute="} {
		if regexp.MustCompile(`(?m)^` + bad).MatchString(unit) {
			t.Errorf("the unit sets %s", bad)
		}
	}
	verifyUnit(t, strings.Replace(unit, "ExecStart=/usr/local/bin/hotswap", "ExecStart="+exe, 1))
}

func verifyUnit(t *testing.T, unit string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not found: the unit is not verified (apt-get install systemd)")
		return
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "hotswap.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// A bad or missing checksum stops the install before anything is written.
func TestInstallChecksums(t *testing.T) {
	t.Parallel()
	a := archive(t)
	data, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(a)
	for _, c := range []struct{ what, sums, want string }{
		{"mismatch", strings.Repeat("0", 64) + "  " + name + "\n", "does not match"},
		{"not listed", strings.Repeat("0", 64) + "  other.tar.gz\n", "is not listed"},
	} {
		dir := t.TempDir()
		copyArchive := filepath.Join(dir, name)
		if err := os.WriteFile(copyArchive, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(c.sums), 0o644); err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		out, err := install(t, copyArchive, "--root", root, "--no-service")
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: %v, want a failure saying %q:\n%s", c.what, err, c.want, out)
		}
		if _, err := os.Stat(filepath.Join(root, "usr")); !os.IsNotExist(err) {
			t.Errorf("%s: installed anyway (%v)", c.what, err)
		}
	}
	// No SHA256SUMS: installed, and said to be unverified.
	dir := t.TempDir()
	lone := filepath.Join(dir, name)
	if err := os.WriteFile(lone, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := install(t, lone, "--root", t.TempDir(), "--no-service")
	if err != nil || !strings.Contains(out, "NOT verified") {
		t.Errorf("without SHA256SUMS: %v\n%s", err, out)
	}
}

// From a URL, with the SHA256SUMS beside it.
func TestInstallFromURL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		if _, err := exec.LookPath("wget"); err != nil {
			t.Skip("neither curl nor wget: install.sh cannot download (apt-get install curl)")
		}
	}
	a := archive(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(a))))
	defer srv.Close()
	root := t.TempDir()
	out, err := install(t, srv.URL+"/"+filepath.Base(a), "--root", root, "--no-service")
	if err != nil || !strings.Contains(out, "verified ") || strings.Contains(out, "NOT verified") {
		t.Fatalf("%v\n%s", err, out)
	}
	mustExist(t, filepath.Join(root, "usr/local/bin/hotswap"), true)
}

// Installed into a prefix of its own, the example config's programs are
// the installed mock backend: hotswap check passes on it.
func TestInstalledExampleChecks(t *testing.T) {
	t.Parallel()
	prefix := filepath.Join(t.TempDir(), "usr")
	out, err := install(t, archive(t), "--prefix", prefix, "--no-service")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	check, err := exec.Command(filepath.Join(prefix, "bin/hotswap"), "check", "-config",
		filepath.Join(prefix, "share/hotswap/config.example.yaml")).CombinedOutput()
	if err != nil || !strings.Contains(string(check), ": ok, ") {
		t.Errorf("hotswap check: %v\n%s", err, check)
	}
}

var listening = regexp.MustCompile(`hotswap listening\s+\{"addr": "([^"]+)"`)

// Unpacked, the archive serves its own config.yaml as it is, from its
// directory: bin/hotswap -config config.yaml, whose models run
// bin/mockbackend.
func TestArchiveServesFromItsDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	untar := exec.Command("tar", "-xzf", archive(t), "-C", dir)
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	top, err := filepath.Glob(filepath.Join(dir, "hotswap-*"))
	if err != nil || len(top) != 1 {
		t.Fatalf("the archive holds %v, want one hotswap-* directory", top)
	}
	cmd := exec.Command("bin/hotswap", "-config", "config.yaml", "-listen", "127.0.0.1:0")
	cmd.Dir = top[0]
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	addr := make(chan string, 1)
	go func() {
		var buf [4096]byte
		for {
			n, err := logs.Read(buf[:])
			log.Write(buf[:n]) // only this goroutine, until cmd.Wait
			if m := listening.FindSubmatch(log.Bytes()); m != nil {
				select {
				case addr <- string(m[1]):
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if left := mocktest.Leftovers(filepath.Join(top[0], "bin/mockbackend"), 5*time.Second); len(left) > 0 {
			t.Errorf("mock backends left running: %v", left)
		}
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("hotswap did not say where it listens")
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post("http://"+a+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"chat-small","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"choices"`) {
		t.Errorf("chat-small: %d %s", resp.StatusCode, body)
	}
}

// The container image's config (Containerfile) passes hotswap check once
// its llama-server is where the llama.cpp images have it, /app.
func TestContainerConfigChecks(t *testing.T) {
	t.Parallel()
	prefix := filepath.Join(t.TempDir(), "usr")
	if out, err := install(t, archive(t), "--prefix", prefix, "--no-service"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := t.TempDir()
	server := filepath.Join(dir, "llama-server")
	if err := os.WriteFile(server, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := read(t, "container-config.yaml")
	if !strings.Contains(text, "cmd: /app/llama-server ") {
		t.Fatal("the container config no longer runs /app/llama-server")
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(text, "/app/llama-server", server)), 0o644); err != nil {
		t.Fatal(err)
	}
	check, err := exec.Command(filepath.Join(prefix, "bin/hotswap"), "check", "-config", config).CombinedOutput()
	if err != nil || !strings.Contains(string(check), ": ok, 2 models") {
		t.Errorf("hotswap check: %v\n%s", err, check)
	}
	if cf := read(t, "../Containerfile"); !strings.Contains(cf, "COPY packaging/container-config.yaml /etc/hotswap/config.yaml") {
		t.Error("the Containerfile no longer copies packaging/container-config.yaml")
	}
}

// The scripts are POSIX sh, as shellcheck reads them.
func TestShellcheck(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck not found: the scripts are not linted (apt-get install shellcheck)")
	}
	out, err := exec.Command("shellcheck", "-s", "sh", "install.sh", "dist.sh", "dist-test.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}
