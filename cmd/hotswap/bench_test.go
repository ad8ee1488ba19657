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
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

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
	b := build(t)
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
	b := build(t)
	out, err := exec.Command(b.hotswap, "bench", "-models", "m").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "-target") {
		t.Errorf("exit %v: %s", err, out)
	}
}
