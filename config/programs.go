package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// CheckPrograms reports every model whose program cannot be run, looked up
// as the swapper's exec will look it up when the model starts: a bare name
// in hotswap's own PATH, a path with a slash from hotswap's working
// directory. The error is a *ValidationError naming each model's cmd and
// what is wrong: not found, not executable, or a directory.
//
// It is apart from Parse, which stays a pure function of the file's text
// (a file may be checked on a machine that is not the one it runs on);
// `hotswap check`, hotswap's start and a reload call it (see LoadRunnable),
// so that check says what serve will do, and a reload never replaces a
// working backend with one that can only fail to start.
func CheckPrograms(c *Config) error {
	var problems []string
	for _, id := range modelIDs(c) {
		m := c.Models[id]
		if p := programProblem(m, m.Cmd); p != "" {
			problems = append(problems, "models."+id+".cmd: "+p)
		}
		if p := programProblem(m, m.Stop); p != "" {
			problems = append(problems, "models."+id+".stop: "+p)
		}
		if m.Sleep != nil {
			if p := programProblem(m, m.Sleep.Sleep.Argv); p != "" {
				problems = append(problems, "models."+id+".sleep.sleep: "+p)
			}
			if p := programProblem(m, m.Sleep.Wake.Argv); p != "" {
				problems = append(problems, "models."+id+".sleep.wake: "+p)
			}
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// LoadRunnable is Load, then CheckPrograms: a file whose programs cannot
// all run is refused as an invalid one is, its problems under its name.
func LoadRunnable(path string) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := CheckPrograms(c); err != nil {
		var verr *ValidationError
		if errors.As(err, &verr) && len(verr.Problems) > 1 {
			return nil, fmt.Errorf("config %s: %d problems:\n%w", path, len(verr.Problems), err)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// modelIDs are c's models in the file's order; a Config built by hand may
// list none, and then its models are taken by name.
func modelIDs(c *Config) []string {
	if len(c.ModelIDs) == len(c.Models) {
		return c.ModelIDs
	}
	ids := make([]string, 0, len(c.Models))
	for id := range c.Models {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// programProblem says why the program of argv (m's cmd or stop) cannot
// be run, or "" if it can.
func programProblem(m *Model, argv []string) string {
	if len(argv) == 0 || argv[0] == "" {
		return "" // Parse reports these
	}
	name := argv[0]
	if strings.Contains(name, PlaceholderPort) || strings.Contains(name, PlaceholderPID) {
		return "" // which program runs is known only when it starts
	}
	name = strings.ReplaceAll(name, PlaceholderModel, m.ID)

	// The verdict is exec's own: what exec.Command does with the name.
	path, err := exec.LookPath(name)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, exec.ErrDot):
		return fmt.Sprintf("program %q is found only through a relative directory in PATH (%s), "+
			"from which hotswap does not run programs: write %s or an absolute path", name, path, dotSlash(path))
	}
	// The words are ours: exec says "not found" of a program in PATH that
	// is there but is a directory or not executable.
	if strings.Contains(name, "/") {
		what := fmt.Sprintf("program %q", name)
		if abs, aerr := filepath.Abs(name); aerr == nil && abs != name {
			what += " (" + abs + ")" // relative: from the working directory
		}
		return what + " " + fileProblem(name, err)
	}
	pathList := os.Getenv("PATH")
	problem := fmt.Sprintf("program %q is not found in hotswap's PATH (%s)", name, pathList)
	if pathList == "" {
		problem = fmt.Sprintf("program %q is not found: hotswap's PATH is empty", name)
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		candidate := strings.TrimSuffix(dir, "/") + "/" + name
		if _, err := exec.LookPath(candidate); err != nil && !errors.Is(err, fs.ErrNotExist) {
			problem += ": " + candidate + " " + fileProblem(candidate, err)
			break
		}
	}
	if envSets(m.Env, "PATH") {
		problem += "; the model's env sets PATH for the backend, but hotswap looks the program up in its own: give its full path"
	}
	return problem
}

// fileProblem says in words what err, from looking up path, means.
func fileProblem(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "is not found"
	case errors.Is(err, syscall.EISDIR):
		return "is a directory"
	case errors.Is(err, fs.ErrPermission):
		if fi, serr := os.Stat(path); serr == nil {
			return fmt.Sprintf("is not executable (%v)", fi.Mode().Perm())
		}
		return "is not executable"
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	return fmt.Sprintf("cannot be run: %v", err)
}

// dotSlash is path as a user writes a program relative to the working
// directory.
func dotSlash(path string) string {
	if strings.HasPrefix(path, "./") || strings.HasPrefix(path, "../") || filepath.IsAbs(path) {
		return path
	}
	return "./" + path
}

// envSets reports whether env (KEY=VALUE entries) sets key.
func envSets(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}
