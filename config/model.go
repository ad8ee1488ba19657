package config

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The placeholders a model's cmd, proxy and env may use.
const (
	PlaceholderPort  = "${PORT}"
	PlaceholderModel = "${MODEL}"
	// PlaceholderPID is the backend's pid, in a model's stop command only.
	PlaceholderPID = "${PID}"
)

// placeholderRE matches one ${NAME} reference, so that Parse can reject the
// ones hotswap does not expand (a ${HOME} would otherwise reach the backend
// literally, since nothing runs a shell).
var placeholderRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// NeedsPort reports whether the cmd, proxy or env reference ${PORT}, that is
// whether a port must be taken from the range before the backend starts.
func (m *Model) NeedsPort() bool {
	if strings.Contains(m.proxy(), PlaceholderPort) {
		return true
	}
	return anyContains(m.Cmd, PlaceholderPort) || anyContains(m.Env, PlaceholderPort)
}

// Expand returns the backend's argv, its extra environment and the upstream
// base URL (without a trailing slash), with ${PORT} replaced by port and
// ${MODEL} by the model id. The returned slices are new; m is not changed.
// env holds only the model's own entries: the caller adds them to its own
// environment.
func (m *Model) Expand(port int) (argv []string, env []string, upstream string) {
	r := strings.NewReplacer(PlaceholderPort, strconv.Itoa(port), PlaceholderModel, m.ID)
	argv = make([]string, len(m.Cmd))
	for i, a := range m.Cmd {
		argv[i] = r.Replace(a)
	}
	if len(m.Env) > 0 {
		env = make([]string, len(m.Env))
		for i, e := range m.Env {
			env[i] = r.Replace(e)
		}
	}
	upstream = strings.TrimRight(r.Replace(m.proxy()), "/")
	return argv, env, upstream
}

// LogArgv is the backend's argv as logs show it: LogCmd, with ${PORT} and
// ${MODEL} expanded as Expand does, and what came from hotswap's
// environment left as its ${env:NAME}.
func (m *Model) LogArgv(port int) []string {
	cmd := m.LogCmd
	if cmd == nil {
		cmd = m.Cmd // a Model built by hand
	}
	r := strings.NewReplacer(PlaceholderPort, strconv.Itoa(port), PlaceholderModel, m.ID)
	out := make([]string, len(cmd))
	for i, a := range cmd {
		out[i] = r.Replace(a)
	}
	return out
}

// proxy returns the proxy template, defaulted for Models built by hand.
func (m *Model) proxy() string {
	if m.Proxy == "" {
		return DefaultProxy
	}
	return m.Proxy
}

func anyContains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// checkPlaceholders returns a problem for each ${...} in s that hotswap
// does not expand, and for a "${" that is never closed.
func checkPlaceholders(s string, extra ...string) []string {
	var problems []string
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		if m[0] != PlaceholderPort && m[0] != PlaceholderModel && !slices.Contains(extra, m[0]) {
			problems = append(problems, "unknown placeholder "+strconv.Quote(m[0])+
				" (only ${PORT} and ${MODEL} are expanded; nothing runs a shell)")
		}
	}
	if strings.Contains(placeholderRE.ReplaceAllString(s, ""), "${") {
		problems = append(problems, "unterminated placeholder in "+strconv.Quote(s))
	}
	return problems
}
