package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// programRig is a directory of would-be programs: an executable, a file
// that is not executable, and a directory, each named as given.
type programRig struct{ dir string }

func newProgramRig(t *testing.T) programRig {
	t.Helper()
	return programRig{dir: t.TempDir()}
}

func (r programRig) file(t *testing.T, name string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func (r programRig) mkdir(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(r.dir, name)
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// programProblems checks the one model of a configuration whose cmd is
// cmd (and env, env), and returns what CheckPrograms says.
func programProblems(t *testing.T, cmd string, env ...string) []string {
	t.Helper()
	text := "models:\n  m:\n    cmd: [" + quoteList(cmd) + ", --port, '${PORT}']\n"
	if len(env) > 0 {
		text += "    env: [" + quoteList(env...) + "]\n"
	}
	err := CheckPrograms(mustParse(t, text))
	if err == nil {
		return nil
	}
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("CheckPrograms: %T %v, want a *ValidationError", err, err)
	}
	return verr.Problems
}

func quoteList(s ...string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}

func TestCheckProgramsLooksUpAsExecDoes(t *testing.T) {
	r := newProgramRig(t)
	bin, other := r.mkdir(t, "bin"), r.mkdir(t, "other")
	r.file(t, "bin/server", 0o755)
	r.file(t, "bin/plain", 0o644)
	r.mkdir(t, "bin/folder")
	r.file(t, "other/plain", 0o755) // a later PATH entry has it executable
	r.file(t, "models/m/run.sh", 0o755)
	r.file(t, "here", 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+other)
	t.Chdir(r.dir)

	for _, c := range []struct {
		name, cmd string
		env       []string
		want      string // "" = runs; else what the one problem contains
	}{
		{"bare name in PATH", "server", nil, ""},
		{"bare name executable further on in PATH", "plain", nil, ""},
		{"absolute path", filepath.Join(bin, "server"), nil, ""},
		{"relative path, from the working directory", "./bin/server", nil, ""},
		{"relative path without ./", "bin/server", nil, ""},
		{"${MODEL} in the program", filepath.Join(r.dir, "models/${MODEL}/run.sh"), nil, ""},
		{"${PORT} in the program: known only at start", "/nowhere/${PORT}/x", nil, ""},

		{"bare name missing", "llama-server",
			nil, `models.m.cmd: program "llama-server" is not found in hotswap's PATH (` + bin},
		{"bare name only a directory", "folder",
			nil, `program "folder" is not found in hotswap's PATH (` + bin + string(os.PathListSeparator) + other + `): ` + bin + `/folder is a directory`},
		{"absolute path missing", "/opt/nothing/llama-server", nil, `program "/opt/nothing/llama-server" is not found`},
		{"absolute path not executable", filepath.Join(bin, "plain"), nil, `is not executable (-rw-r--r--)`},
		{"absolute path a directory", bin, nil, `program "` + bin + `" is a directory`},
		{"relative path missing", "./server", nil, `program "./server" (` + r.dir + `/server) is not found`},
		{"relative path not executable", "bin/plain", nil, `program "bin/plain" (` + bin + `/plain) is not executable (-rw-r--r--)`},
		{"${MODEL} expanded before looking", "./models/${MODEL}x/run.sh", nil, `program "./models/mx/run.sh" (` + r.dir + `/models/mx/run.sh) is not found`},
		{"a PATH of the model's own is not where hotswap looks", "server2", []string{"PATH=" + r.dir},
			`; the model's env sets PATH for the backend, but hotswap looks the program up in its own: give its full path`},
	} {
		got := programProblems(t, c.cmd, c.env...)
		switch {
		case c.want == "" && len(got) > 0:
			t.Errorf("%s: %q", c.name, got)
		case c.want != "" && (len(got) != 1 || !strings.Contains(got[0], c.want)):
			t.Errorf("%s: %q, want one problem with %q", c.name, got, c.want)
		}
	}

	// A bare name with only a non-executable candidate says so.
	t.Setenv("PATH", bin)
	if got := programProblems(t, "plain"); len(got) != 1 ||
		!strings.Contains(got[0], `program "plain" is not found in hotswap's PATH (`+bin+`): `+bin+`/plain is not executable`) {
		t.Errorf("only a non-executable plain in PATH: %q", got)
	}
	// A relative directory in PATH: exec refuses what it finds there.
	t.Setenv("PATH", ".")
	if got := programProblems(t, "here"); len(got) != 1 ||
		!strings.Contains(got[0], `found only through a relative directory in PATH (here)`) ||
		!strings.Contains(got[0], "write ./here or an absolute path") {
		t.Errorf("here, through PATH=.: %q", got)
	}
	t.Setenv("PATH", "")
	if got := programProblems(t, "server"); len(got) != 1 || !strings.Contains(got[0], "PATH is empty") {
		t.Errorf("without PATH: %q", got)
	}
}

// TestLoadRunnable: every model with a program that cannot run is named,
// in the file's order, under the file's name; Parse alone does not look.
func TestLoadRunnable(t *testing.T) {
	r := newProgramRig(t)
	server := r.file(t, "server", 0o755)
	path := filepath.Join(r.dir, "config.yaml")
	text := "models:\n" +
		"  zeta: {cmd: '" + server + " --port ${PORT}'}\n" +
		"  alpha: {cmd: '/no/such/llama-server --port ${PORT}'}\n" +
		"  beta: {cmd: '" + r.dir + " --port ${PORT}'}\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("Load looks at programs: %v", err)
	}
	_, err := LoadRunnable(path)
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Problems) != 2 ||
		!strings.HasPrefix(verr.Problems[0], "models.alpha.cmd: ") || !strings.HasPrefix(verr.Problems[1], "models.beta.cmd: ") {
		t.Fatalf("LoadRunnable: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "config "+path+": 2 problems:\n") {
		t.Errorf("the problems are not under the file's name: %v", err)
	}

	if err := os.WriteFile(path, []byte("models:\n  zeta: {cmd: '"+server+" --port ${PORT}'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadRunnable(path); err != nil || len(c.Models) != 1 {
		t.Errorf("a runnable file: %v", err)
	}
	if _, err := LoadRunnable(filepath.Join(r.dir, "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}

// TestCheckProgramsChecksStop: a model's stop command is looked up as its
// cmd is; one whose program is known only at the stop (${PID}) is not.
func TestCheckProgramsChecksStop(t *testing.T) {
	r := newProgramRig(t)
	bin := r.mkdir(t, "bin")
	r.file(t, "bin/server", 0o755)
	r.file(t, "bin/docker", 0o755)
	t.Setenv("PATH", bin)
	for _, c := range []struct{ stop, want string }{
		{"[docker, stop, 'hs-${MODEL}']", ""},
		{"['/proc/${PID}/x']", ""},
		{"[podman, stop, 'hs-${MODEL}']", `models.m.stop: program "podman" is not found in hotswap's PATH (` + bin + ")"},
	} {
		err := CheckPrograms(mustParse(t, "models:\n  m:\n    cmd: [server, --port, '${PORT}']\n    stop: "+c.stop+"\n"))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("stop %s: %v", c.stop, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("stop %s: %v, want %q", c.stop, err, c.want)
		}
	}
}
