package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestMacrosAndVariables: a model whose command is made of macros and of
// hotswap's environment starts and answers; the backend gets the
// variable's value, and the log shows only its name.
func TestMacrosAndVariables(t *testing.T) {
	b := build(t)
	const secret = "sk-never-in-a-log-4417"
	t.Setenv("HS_TEST_BACKEND", b.mock)
	t.Setenv("HS_TEST_SECRET", secret)
	_, url, logs := startLogged(t, b, writeConfig(t, b, `
ports: 22000-22999
macros:
  backend: ${env:HS_TEST_BACKEND} -port ${PORT}
  quick: -startup 0s
models:
  m:
    macros:
      flags: ${quick} -model ${MODEL}
    cmd: ${backend} ${flags} -fail-message ${env:HS_TEST_SECRET}
    description: runs ${env:HS_TEST_BACKEND}
`))
	pid := chat(t, url, "m")
	argv, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Skipf("no /proc here to read the backend's argv: %v", err)
	}
	want := strings.Join([]string{b.mock, "-port"}, "\x00")
	if !bytes.HasPrefix(argv, []byte(want)) || !bytes.Contains(argv, []byte("-fail-message\x00"+secret+"\x00")) {
		t.Errorf("backend argv = %q", bytes.ReplaceAll(argv, []byte{0}, []byte{' '}))
	}
	// The log is written in batches: wait for the start's line.
	if !mocktest.Eventually(10*time.Second, func() bool { return strings.Contains(logs.String(), "starting backend") }) {
		t.Fatalf("no start in the log:\n%s", logs)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log holds the variable's value:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "${env:HS_TEST_SECRET}") {
		t.Errorf("the log does not show the command with the variable's name:\n%s", logs)
	}
}

// TestCheckNamesAMissingVariable: hotswap check refuses a file that uses a
// variable that is not set, or a macro that is not defined, naming the
// field, and never prints a variable's value.
func TestCheckNamesAMissingVariable(t *testing.T) {
	t.Setenv("HS_TEST_SECRET", "sk-never-printed-9931")
	path := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(path, []byte(`
macros:
  server: sh -c x
models:
  a:
    cmd: ${server} --port ${PORT} --key ${env:HS_TEST_SURELY_UNSET}
    headers: {Authorization: "Bearer ${env:HS_TEST_SECRET}"}
  b:
    cmd: ${server} --port ${PORT} -m ${weights}
`), 0o644)
	var out bytes.Buffer
	if code := run([]string{"check", "-config", path}, &out); code != 1 {
		t.Fatalf("check: exit %d, want 1\n%s", code, &out)
	}
	for _, want := range []string{
		"models.a.cmd: the environment variable HS_TEST_SURELY_UNSET is not set",
		"models.b.cmd: unknown macro ${weights}",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check does not say %q:\n%s", want, &out)
		}
	}
	if strings.Contains(out.String(), "sk-never-printed") {
		t.Errorf("check printed a variable's value:\n%s", &out)
	}
}
