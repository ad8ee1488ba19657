package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// benchTool builds the load generator's program, hotswap-bench, beside
// the tests' hotswap, where `hotswap bench` looks for it: once, and only
// for the tests that run it.
var benchTool = sync.OnceValues(func() (string, error) {
	return mocktest.Build(filepath.Dir(built.hotswap), "./cmd/hotswap-bench", mocktest.RaceFlags()...)
})

// buildWithBench is build, with hotswap-bench beside hotswap.
func buildWithBench(t *testing.T) (bins, string) {
	t.Helper()
	b := build(t)
	tool, err := benchTool()
	if err != nil {
		t.Fatal(err)
	}
	return b, tool
}

// benchReport is the part of `hotswap bench -json` these tests read.
type benchReport struct {
	Interrupted bool `json:"interrupted"`
	Targets     []struct {
		Label string `json:"label"`
		Total struct {
			Sent      int `json:"sent"`
			Answered  int `json:"answered"`
			Errors    int `json:"errors"`
			Cancelled int `json:"cancelled"`
		} `json:"total"`
		Hotswap *struct {
			Starts int `json:"starts"`
		} `json:"hotswap"`
	} `json:"targets"`
}

func readBenchReport(t *testing.T, path string) benchReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r benchReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return r
}

const benchModels = `
ports: 22000-22999
models:
  slow: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 1000 -stream-interval 5ms", parallel: 4}
`

// Ctrl-C stops `hotswap bench` at once, and the report of what ran is
// still written, summary, JSON and HTML.
func TestBenchCtrlCWritesTheReport(t *testing.T) {
	b, _ := buildWithBench(t)
	_, url := start(t, b, writeConfig(t, b, benchModels))
	// Loaded first, so that polling its stats below starts nothing.
	chat(t, url, "slow")
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	cmd := exec.Command(b.hotswap, "bench", "-target", url, "-models", "slow", "-users", "3", "-stream",
		"-max-tokens", "1000", "-duration", "10m", "-json", jsonPath, "-html", htmlPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	stats := func() (n int) {
		resp, err := http.Get(url + "/upstream/slow/mock/stats")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var st struct{ Tokens int }
		json.NewDecoder(resp.Body).Decode(&st)
		return st.Tokens
	}
	base := stats() // the warm-up chat's
	if !mocktest.Eventually(20*time.Second, func() bool { return stats() >= base+30 }) {
		t.Fatalf("no tokens streamed; bench said %s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Errorf("exit %v, want status 130; stderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hotswap bench went on after Ctrl-C")
	}
	r := readBenchReport(t, jsonPath)
	if !r.Interrupted || len(r.Targets) != 1 {
		t.Fatalf("report: %+v", r)
	}
	tot := r.Targets[0].Total
	if tot.Cancelled != 3 || tot.Errors != 0 || tot.Sent != tot.Answered+tot.Cancelled {
		t.Errorf("totals %+v: three streams were cut by Ctrl-C", tot)
	}
	if h := r.Targets[0].Hotswap; h == nil || h.Starts != 0 {
		t.Errorf("hotswap figures %+v: the model was loaded before the run", h)
	}
	if !strings.Contains(stdout.String(), "slow") || !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	if html, err := os.ReadFile(htmlPath); err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("the HTML report: %v", err)
	}
}

// A bad command line is said at once, with status 2.
func TestBenchBadFlags(t *testing.T) {
	b, _ := buildWithBench(t)
	out, err := exec.Command(b.hotswap, "bench", "-models", "m").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "-target") {
		t.Errorf("exit %v: %s", err, out)
	}
}

// hotswap alone, with no hotswap-bench beside it: `hotswap bench` finds
// the program on PATH, and says how to get it when it is not there either.
func TestBenchFindsItsProgram(t *testing.T) {
	b, tool := buildWithBench(t)
	alone := filepath.Join(t.TempDir(), "hotswap")
	copyFile(t, b.hotswap, alone)
	empty := t.TempDir()

	cmd := exec.Command(alone, "bench", "-h")
	cmd.Env = append(os.Environ(), "PATH="+empty)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 {
		t.Errorf("without hotswap-bench: exit %v, want status 127: %s", err, out)
	}
	for _, want := range []string{"hotswap-bench", filepath.Dir(alone), "make build", "./cmd/hotswap-bench"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("without hotswap-bench, the message does not say %q:\n%s", want, out)
		}
	}

	cmd = exec.Command(alone, "bench", "-h")
	cmd.Env = append(os.Environ(), "PATH="+empty+string(os.PathListSeparator)+filepath.Dir(tool))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "usage: hotswap bench") {
		t.Errorf("hotswap-bench on PATH: %v: %s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
