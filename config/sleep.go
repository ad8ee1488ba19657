package config

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// httpAction is how a sleep or wake given as an HTTP request is written:
// a method and a path on the backend, "POST /sleep?level=1".
var httpAction = regexp.MustCompile(`^(GET|POST|PUT|PATCH|DELETE) (/\S*)$`)

// sleep reads a model's `sleep:`: the preset "vllm", or a mapping with
// sleep and wake (each an HTTP request "METHOD /path" or a command) or a
// preset, memory (what it holds asleep) and timeout.
func (p *parser) sleep(m *Model) setter {
	return func(v *yaml.Node, path string) {
		sl := &Sleep{Timeout: DefaultSleepTimeout}
		if deref(v).Kind == yaml.ScalarNode {
			if p.sleepPreset(v, path, sl) {
				m.Sleep = sl
			}
			return
		}
		var hasSleep, hasWake bool
		var preset *Sleep
		p.fields(v, path, map[string]setter{
			// The preset's sleep and wake, which a sleep or wake given
			// beside it replaces.
			"preset": func(v *yaml.Node, path string) {
				preset = &Sleep{}
				if !p.sleepPreset(v, path, preset) {
					preset = nil
				}
			},
			"sleep": func(v *yaml.Node, path string) { sl.Sleep, hasSleep = p.action(v, path) },
			"wake":  func(v *yaml.Node, path string) { sl.Wake, hasWake = p.action(v, path) },
			"memory": func(v *yaml.Node, path string) {
				p.fields(v, path, map[string]setter{
					"ram":  p.size(&sl.Memory.RAM, true),
					"vram": p.size(&sl.Memory.VRAM, true),
				})
			},
			"timeout": p.duration(&sl.Timeout, false),
		})
		if deref(v).Kind != yaml.MappingNode {
			return // reported by fields
		}
		if preset != nil && !hasSleep {
			sl.Sleep, hasSleep = preset.Sleep, true
		}
		if preset != nil && !hasWake {
			sl.Wake, hasWake = preset.Wake, true
		}
		if !hasSleep || !hasWake {
			p.addf(path, "needs both sleep and wake (or the preset %q)", SleepVLLM)
			return
		}
		m.Sleep = sl
	}
}

// sleepPreset reads a preset's name and sets sl's sleep and wake to it.
func (p *parser) sleepPreset(v *yaml.Node, path string, sl *Sleep) bool {
	s, ok := p.scalar(v, path)
	if !ok {
		return false
	}
	if s != SleepVLLM {
		p.addf(path, "unknown preset %q (want %q, or a mapping with sleep and wake)", s, SleepVLLM)
		return false
	}
	sl.Sleep = Action{Method: "POST", Path: "/sleep?level=1"}
	sl.Wake = Action{Method: "POST", Path: "/wake_up"}
	return true
}

// action reads one sleep or wake: "METHOD /path" is an HTTP request to
// the backend; any other string, or a list, is a command, with ${PID},
// ${PORT} and ${MODEL}.
func (p *parser) action(v *yaml.Node, path string) (Action, bool) {
	if deref(v).Kind == yaml.ScalarNode {
		s, ok := p.rawScalar(v, path)
		if ok {
			s, ok = p.expandMacros(path, s)
		}
		if !ok {
			return Action{}, false
		}
		if g := httpAction.FindStringSubmatch(strings.TrimSpace(s)); g != nil {
			if strings.Contains(g[2], "${") {
				p.addf(path, "the path of an HTTP request may not hold placeholders or variables: %q", g[2])
				return Action{}, false
			}
			return Action{Method: g[1], Path: g[2]}, true
		}
	}
	argv, logged := p.runningCmd(v, path)
	if len(argv) == 0 {
		return Action{}, false
	}
	return Action{Argv: argv, LogArgv: logged}, true
}

// runningCmd reads a command run on a running backend (its stop, sleep or
// wake): a cmd whose placeholders may include ${PID}, known by then.
func (p *parser) runningCmd(v *yaml.Node, path string) (argv, logged []string) {
	p.running = true
	defer func() { p.running = false }()
	argv, logged = p.cmd(v, path)
	p.placeholders(path, argv...)
	return argv, logged
}
