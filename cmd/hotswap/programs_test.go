package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// A model whose program cannot run would only ever fail to start: check
// says so, hotswap refuses to start with it, and a reload that brings one
// in is refused whole.

// programsDir holds what the configurations below name: a copy of the
// mock backend under bin/ (found through PATH as "mockbackend"), a file
// that is not executable, and a directory.
func programsDir(t *testing.T, b bins) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(b.mock, filepath.Join(dir, "bin", "mockbackend")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hotswapIn runs hotswap with args in dir, with bin/ first in its PATH.
func hotswapIn(b bins, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(b.hotswap, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"))
	return cmd
}

func TestCheckAndStartRefuseProgramsThatCannotRun(t *testing.T) {
	b := build(t)
	dir := programsDir(t, b)
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad.yaml", `
ports: 22000-22999
models:
  found: {cmd: "mockbackend -port ${PORT} -model ${MODEL}"}
  missing: {cmd: "llama-server -port ${PORT}"}
  plain: {cmd: "./plain -port ${PORT}"}
  folder: {cmd: "./folder -port ${PORT}"}
  relative: {cmd: "bin/mockbackend -port ${PORT} -model ${MODEL}"}
`)
	check := hotswapIn(b, dir, "check", "-config", "bad.yaml")
	said, err := check.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("check of bad.yaml: %v\n%s", err, said)
	}
	for _, want := range []string{
		"config bad.yaml: 3 problems:\n",
		`models.missing.cmd: program "llama-server" is not found in hotswap's PATH (` + filepath.Join(dir, "bin"),
		`models.plain.cmd: program "./plain" (` + filepath.Join(dir, "plain") + `) is not executable (-rw-r--r--)`,
		`models.folder.cmd: program "./folder" (` + filepath.Join(dir, "folder") + `) is a directory`,
	} {
		if !strings.Contains(string(said), want) {
			t.Errorf("check does not say %q:\n%s", want, said)
		}
	}
	if strings.Contains(string(said), "models.found") || strings.Contains(string(said), "models.relative") {
		t.Errorf("check refuses a program that runs:\n%s", said)
	}

	// hotswap itself refuses to start with the file, saying what check
	// says, and never listens.
	serve := hotswapIn(b, dir, "-config", "bad.yaml", "-listen", "127.0.0.1:0")
	var out bytes.Buffer
	serve.Stdout, serve.Stderr = &out, &out
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	select {
	case err := <-done:
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || out.String() != string(said) {
			t.Errorf("hotswap with bad.yaml: %v; it said\n%s\nwhere check said\n%s", err, &out, said)
		}
	case <-time.After(20 * time.Second):
		serve.Process.Kill()
		<-done
		t.Fatalf("hotswap started with bad.yaml:\n%s", &out)
	}

	// What check passes, hotswap runs: the bare name through PATH, and
	// the relative path from the directory hotswap runs in.
	write("good.yaml", `
ports: 22000-22999
models:
  found: {cmd: "mockbackend -port ${PORT} -model ${MODEL}"}
  relative: {cmd: "bin/mockbackend -port ${PORT} -model ${MODEL}"}
`)
	if said, err := hotswapIn(b, dir, "check", "-config", "good.yaml").CombinedOutput(); err != nil ||
		!strings.Contains(string(said), "good.yaml: ok, 2 models") {
		t.Fatalf("check of good.yaml: %v\n%s", err, said)
	}
	url := serveIn(t, b, dir, "good.yaml")
	for _, model := range []string{"found", "relative"} {
		if pid := chat(t, url, model); pid == 0 {
			t.Errorf("%s did not start", model)
		}
	}
}

// serveIn runs hotswap in dir (see hotswapIn) and returns its base URL;
// it is stopped when the test ends.
func serveIn(t *testing.T, b bins, dir, config string) string {
	t.Helper()
	cmd := hotswapIn(b, dir, "-config", config, "-listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("hotswap did not say where it listens")
	}
	return ""
}

// TestReloadRefusesAProgramThatCannotRun: the reload that would have
// stopped a working backend for one whose program is not there is
// refused, by POST and by SIGHUP; the backend goes on, and nothing else
// in the file is applied.
func TestReloadRefusesAProgramThatCannotRun(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, reloadable)
	cmd, url, logs := startLogged(t, b, cfg)
	c := client{t, url, ""}
	keepPid := chatKey(t, url, "keep")

	broken := strings.ReplaceAll(`
ports: 22000-22999
api_keys: [k2]
models:
  keep: {cmd: "/opt/nowhere/llama-server -port ${PORT} -model ${MODEL}"}
  change: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 3"}
  added: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`, "MOCK", b.mock)
	if err := os.WriteFile(cfg, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, body, _ := c.do("POST", "/admin/reload", "")
	if code != 400 || errCode(body) != "invalid_config" ||
		!strings.Contains(string(body), `models.keep.cmd: program \"/opt/nowhere/llama-server\" is not found`) {
		t.Errorf("reload with a missing program: %d %s", code, body)
	}
	// Nothing applied: no key, no new model, keep's backend the same.
	if code, _, _ := c.do("GET", "/v1/models/added", ""); code != 404 {
		t.Errorf("added is known after a refused reload: %d", code)
	}
	if pid := chatKey(t, url, "keep"); pid != keepPid {
		t.Errorf("keep is pid %d after a refused reload, was %d", pid, keepPid)
	}

	refusals := strings.Count(logs.String(), "reload refused")
	cmd.Process.Signal(syscall.SIGHUP)
	if !mocktest.Eventually(10*time.Second, func() bool {
		return strings.Count(logs.String(), "reload refused") > refusals
	}) {
		t.Fatalf("SIGHUP with a missing program was not refused:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "/opt/nowhere/llama-server") {
		t.Errorf("the refusal does not name the program:\n%s", logs.String())
	}
	if pid := chatKey(t, url, "keep"); pid != keepPid || !mocktest.Alive(keepPid) {
		t.Errorf("keep is pid %d after a refused SIGHUP, was %d", pid, keepPid)
	}

	// The program back in place, the same file applies.
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(broken, "/opt/nowhere/llama-server", b.mock)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.json("POST", "/admin/reload", "", 200, nil)
	c.key = "k2"
	if code, _, _ := c.do("GET", "/v1/models/added", ""); code != 200 {
		t.Errorf("added after the fixed reload: %d", code)
	}
}
