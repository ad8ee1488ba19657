package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// config walks the document and returns the Config it describes. Problems
// are collected in p; the Config is only meaningful when there are none.
func (p *parser) config(doc *yaml.Node) *Config {
	c := Default()
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if isNull(root) {
		p.addf("", "no models: the file holds no settings")
		return c
	}
	if deref(root).Kind != yaml.MappingNode {
		p.addf("", "the file must be a mapping of settings, got %s", describe(root))
		return c
	}

	// Macros first: any value may use them, wherever they are defined.
	p.scope = p.readMacros(valueOf(root, "macros"), "macros", nil)

	// models and modes are read after everything else: model defaults
	// come from top-level settings, and modes refer to models, wherever
	// they appear in the file.
	var models, modes *yaml.Node
	bodyMemorySet := false
	p.fields(root, "", map[string]setter{
		"listen":             p.listen(&c.Listen),
		"log_level":          p.oneOf(&c.LogLevel, "debug", "info", "warn", "error"),
		"api_keys":           p.apiKeys(&c.APIKeys),
		"admin_keys":         p.apiKeys(&c.AdminKeys),
		"cors_origins":       p.origins(&c.CORSOrigins),
		"allowed_hosts":      p.hosts(&c.AllowedHosts),
		"max_body":           p.size(&c.MaxBody, false),
		"ports":              p.ports(&c.Ports),
		"health_timeout":     p.duration(&c.HealthTimeout, false),
		"stop_timeout":       p.duration(&c.StopTimeout, false),
		"upstream_keepalive": p.duration(&c.UpstreamKeepalive, true),
		"server": func(v *yaml.Node, path string) {
			p.fields(v, path, map[string]setter{
				"max_conns":        p.integer(&c.Server.MaxConns, 0),
				"max_conns_per_ip": p.integer(&c.Server.MaxConnsPerIP, 0),
				"header_timeout":   p.duration(&c.Server.HeaderTimeout, false),
				"body_min_rate":    p.size(&c.Server.BodyMinRate, false),
				"idle_timeout":     p.duration(&c.Server.IdleTimeout, false),
				"stall_timeout":    p.duration(&c.Server.StallTimeout, true),
				"shutdown_grace":   p.duration(&c.Server.ShutdownGrace, true),
				"body_memory": func(v *yaml.Node, path string) {
					bodyMemorySet = true
					p.size(&c.Server.BodyMemory, false)(v, path)
				},
				"session_ttl": p.duration(&c.Server.SessionTTL, false),
			})
		},
		"memory": func(v *yaml.Node, path string) {
			p.fields(v, path, map[string]setter{
				"reserve_ram":  p.size(&c.Memory.ReserveRAM, true),
				"reserve_vram": p.size(&c.Memory.ReserveVRAM, true),
				"limit_ram":    p.size(&c.Memory.LimitRAM, true),
				"cooldown_max": p.duration(&c.Memory.CooldownMax, true),
				"state_file":   p.str(&c.Memory.StateFile),
			})
		},
		"scheduling": func(v *yaml.Node, path string) {
			p.fields(v, path, map[string]setter{
				"policy":           p.oneOf(&c.Scheduling.Policy, PolicyBatch, PolicyFIFO),
				"max_wait":         p.duration(&c.Scheduling.MaxWait, true),
				"idle_grace":       p.duration(&c.Scheduling.IdleGrace, true),
				"drain_timeout":    p.duration(&c.Scheduling.DrainTimeout, false),
				"queue_size":       p.integer(&c.Scheduling.QueueSize, 1),
				"queue_timeout":    p.duration(&c.Scheduling.QueueTimeout, false),
				"stream_keepalive": p.duration(&c.Scheduling.StreamKeepalive, true),
				"load_progress":    p.loadProgress(&c.Scheduling.LoadProgress),
				"eviction":         p.oneOf(&c.Scheduling.Eviction, EvictLRU, EvictCost),
			})
		},
		"endpoint_picker": func(v *yaml.Node, path string) {
			p.fields(v, path, map[string]setter{
				"open":   p.boolean(&c.EndpointPicker.Open),
				"listen": p.listen(&c.EndpointPicker.Listen),
				"leave":  p.duration(&c.EndpointPicker.Leave, true),
			})
		},
		"models": func(v *yaml.Node, _ string) { models = v },
		"modes":  func(v *yaml.Node, _ string) { modes = v },
		"macros": func(*yaml.Node, string) {}, // read above
	})

	switch {
	case !bodyMemorySet:
		// Room for a few bodies of the largest size at once.
		c.Server.BodyMemory = max(c.Server.BodyMemory, 2*c.MaxBody)
	case c.Server.BodyMemory < c.MaxBody:
		p.addf("server.body_memory", "%s is less than max_body (%s): a body max_body allows could never be read",
			FormatSize(c.Server.BodyMemory), FormatSize(c.MaxBody))
	}
	if c.Server.MaxConns > 0 && c.Server.MaxConnsPerIP > c.Server.MaxConns {
		p.addf("server.max_conns_per_ip", "%d is more than max_conns (%d)", c.Server.MaxConnsPerIP, c.Server.MaxConns)
	}
	if l := c.EndpointPicker.Listen; l != "" && sameAddress(l, c.Listen) {
		p.addf("endpoint_picker.listen", "%s is the main listener's address (listen): give it an address of its own, "+
			"or set endpoint_picker.open to serve /metrics/endpoint there without a key", l)
	}
	p.models(c, models)
	for _, m := range c.Models {
		if m.HealthTimeout == 0 {
			m.HealthTimeout = c.HealthTimeout
		}
		if m.StopTimeout == 0 {
			m.StopTimeout = c.StopTimeout
		}
		if m.UpstreamKeepalive < 0 {
			m.UpstreamKeepalive = c.UpstreamKeepalive
		}
		if m.LoadProgress == "" {
			m.LoadProgress = c.Scheduling.LoadProgress
		}
	}
	p.names(c)
	if modes != nil {
		p.modes(c, modes)
	}
	return c
}

// loadProgress reads a load_progress: off, reasoning or content.
func (p *parser) loadProgress(dst *string) setter {
	return p.oneOf(dst, LoadProgressOff, LoadProgressReasoning, LoadProgressContent)
}

// sameAddress reports whether two listen addresses would take the same
// port on a common interface: the same port, and the same host or either
// on every interface.
func sameAddress(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp || ap == "0" {
		return false // port 0: a free port each
	}
	every := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ah == bh || every(ah) || every(bh)
}

func (p *parser) listen(dst *string) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		_, port, err := net.SplitHostPort(s)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			p.addf(path, "invalid address %q (want host:port, e.g. 127.0.0.1:8080)", s)
			return
		}
		*dst = s
	}
}

func (p *parser) apiKeys(dst *[]string) setter {
	return func(v *yaml.Node, path string) {
		keys, ok := p.strList(v, path)
		for i, k := range keys {
			switch {
			case strings.TrimSpace(k) == "":
				p.addf(index(path, i), "must not be empty")
				ok = false
			case strings.TrimSpace(k) != k || strings.ContainsFunc(k, unicode.IsControl):
				// A client could never send it: headers lose the spaces
				// at their ends and may not hold control characters.
				p.addf(index(path, i), "must not start or end with a space nor hold control characters")
				ok = false
			}
		}
		if ok {
			*dst = keys
		}
	}
}

// origins reads browser origins: "*", or scheme://host[:port] each.
func (p *parser) origins(dst *[]string) setter {
	return func(v *yaml.Node, path string) {
		list, ok := p.strList(v, path)
		for i, o := range list {
			u, err := url.Parse(o)
			if o == "*" {
				continue
			}
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
				p.addf(index(path, i), "invalid origin %q (want \"*\" or scheme://host[:port], e.g. http://localhost:3000)", o)
				ok = false
			}
		}
		if ok {
			*dst = list
		}
	}
}

// ports reads a range written "FIRST-LAST".
func (p *parser) ports(dst *PortRange) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		a, b, found := strings.Cut(s, "-")
		first, err1 := strconv.Atoi(strings.TrimSpace(a))
		last, err2 := strconv.Atoi(strings.TrimSpace(b))
		switch {
		case !found || err1 != nil || err2 != nil ||
			first < 1 || first > 65535 || last < 1 || last > 65535:
			p.addf(path, "invalid range %q (want FIRST-LAST within 1-65535, e.g. 10000-10999)", s)
		case first > last:
			p.addf(path, "invalid range %q: %d is after %d", s, first, last)
		default:
			*dst = PortRange{First: first, Last: last}
		}
	}
}

// validName reports whether s can be a model id, alias or mode name:
// clients send it in JSON and URLs, so it must be non-empty and hold no
// whitespace or control characters.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// models reads the models mapping into c.Models and c.ModelIDs.
func (p *parser) models(c *Config, n *yaml.Node) {
	if isNull(n) {
		p.addf("models", "no models configured")
		return
	}
	pairs := p.pairs(n, "models")
	if len(pairs) == 0 && deref(n).Kind == yaml.MappingNode {
		p.addf("models", "no models configured")
		return
	}
	for _, kv := range pairs {
		if !validName(kv.key) {
			p.addf("models", "invalid model id %q (must be non-empty, without whitespace)", kv.key)
			continue
		}
		// A model with problems is kept, so that aliases and modes
		// naming it do not add confusing follow-on errors.
		c.Models[kv.key] = p.model(kv.key, kv.value, join("models", kv.key))
		c.ModelIDs = append(c.ModelIDs, kv.key)
	}
}

// model reads one model's settings and checks those that depend on each
// other (placeholders, the port).
func (p *parser) model(id string, n *yaml.Node, path string) *Model {
	m := &Model{
		ID:       id,
		Proxy:    DefaultProxy,
		Health:   DefaultHealth,
		Kind:     DefaultKind,
		GPU:      NoGPU,
		Parallel: DefaultParallel,
		// Unset until read: 0 is a setting of its own.
		UpstreamKeepalive: -1,
	}
	hasCmd := false
	if !isNull(n) {
		file := p.scope
		p.scope = p.readMacros(valueOf(n, "macros"), join(path, "macros"), file)
		defer func() { p.scope = file }()
		p.fields(n, path, map[string]setter{
			"macros": func(*yaml.Node, string) {}, // read above
			"cmd": func(v *yaml.Node, path string) {
				hasCmd = true
				m.Cmd, m.LogCmd = p.cmd(v, path)
			},
			"proxy":   p.str(&m.Proxy),
			"health":  p.health(&m.Health),
			"aliases": p.aliasList(&m.Aliases),
			"env":     p.env(&m.Env),
			"kind":    p.oneOf(&m.Kind, "llm", "embedding", "stt", "tts", "image"),
			"memory": func(v *yaml.Node, path string) {
				p.fields(v, path, map[string]setter{
					"ram":  p.size(&m.Memory.RAM, true),
					"vram": p.size(&m.Memory.VRAM, true),
				})
			},
			"gpu":                p.integer(&m.GPU, 0),
			"parallel":           p.integer(&m.Parallel, 1),
			"ttl":                p.duration(&m.TTL, true),
			"pinned":             p.boolean(&m.Pinned),
			"preload":            p.boolean(&m.Preload),
			"health_timeout":     p.duration(&m.HealthTimeout, false),
			"stop_timeout":       p.duration(&m.StopTimeout, false),
			"stop_signal":        p.oneOf(&m.StopSignal, StopTerm, StopKill),
			"upstream_keepalive": p.duration(&m.UpstreamKeepalive, true),
			"headers":            p.headers(&m.Headers),
			"upstream_model":     p.name(&m.UpstreamModel, "model name"),
			"params":             p.params(&m.Params),
			"unlisted":           p.boolean(&m.Unlisted),
			"name":               p.str(&m.Info.Name),
			"description":        p.str(&m.Info.Description),
			"capabilities":       p.capabilities(&m.Info.Capabilities),
			"metadata":           p.metadata(&m.Info.Metadata),
			"load_progress":      p.loadProgress(&m.LoadProgress),
			"files": func(v *yaml.Node, path string) {
				if list, ok := p.strList(v, path); ok {
					m.Files = list
				}
			},
			"read_ahead": func(v *yaml.Node, path string) {
				on := true
				p.boolean(&on)(v, path)
				m.NoReadAhead = !on
			},
			"stop": func(v *yaml.Node, path string) {
				m.Stop, m.LogStop = p.runningCmd(v, path)
			},
			"cgroup":  p.str(&m.Cgroup),
			"sleep":   p.sleep(m),
			"gpu_env": p.oneOf(&m.GPUEnv, GPUEnvs...),
			"variants": func(v *yaml.Node, path string) {
				m.Variants = p.variants(m, v, path)
			},
		})
		p.inherit(m)
	}
	if !hasCmd {
		p.addf(path, "missing cmd (the command that starts the backend)")
	}

	p.placeholders(join(path, "cmd"), m.Cmd...)
	for i, e := range m.Env {
		p.placeholders(index(join(path, "env"), i), e)
	}
	if p.placeholders(join(path, "proxy"), m.Proxy) {
		p.checkProxy(m, join(path, "proxy"))
	}
	if len(m.Cmd) > 0 && strings.Contains(m.Proxy, PlaceholderPort) &&
		!anyContains(m.Cmd, PlaceholderPort) && !anyContains(m.Env, PlaceholderPort) {
		p.addf(path, "the backend is never told its port: add ${PORT} to cmd or set proxy")
	}
	return m
}

// cmd reads a command given as one string (split with SplitArgs) or as a
// list of arguments (taken as they are). Macros are expanded before the
// split, environment variables after it (see macros.go); logged is the
// command with the variables as written.
func (p *parser) cmd(v *yaml.Node, path string) (argv, logged []string) {
	if deref(v).Kind == yaml.SequenceNode {
		for i, item := range deref(v).Content {
			s, ok := p.rawScalar(item, index(path, i))
			if ok {
				s, ok = p.expandMacros(index(path, i), s)
			}
			if !ok {
				return nil, nil
			}
			logged = append(logged, s)
		}
	} else {
		s, ok := p.rawScalar(v, path)
		if ok {
			s, ok = p.expandMacros(path, s)
		}
		if !ok {
			return nil, nil
		}
		var err error
		if logged, err = SplitArgs(s); err != nil {
			p.addf(path, "%v", err)
			return nil, nil
		}
	}
	argv = make([]string, len(logged))
	for i, a := range logged {
		var ok bool
		if argv[i], ok = p.expandEnv(path, a); !ok {
			return nil, nil
		}
		logged[i] = unescape(a)
	}
	switch {
	case len(argv) == 0:
		p.addf(path, "must not be empty")
		return nil, nil
	case argv[0] == "":
		p.addf(path, "the program name is empty")
		return nil, nil
	}
	return argv, logged
}

func (p *parser) health(dst *string) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		if !strings.HasPrefix(s, "/") {
			p.addf(path, "must be a path starting with \"/\", got %q", s)
			return
		}
		*dst = s
	}
}

// aliasList reads aliases, checking each one's form; whether they clash
// with other names is checked once all models are read (see aliases).
func (p *parser) aliasList(dst *[]string) setter {
	return func(v *yaml.Node, path string) {
		list, ok := p.strList(v, path)
		for i, a := range list {
			if !validName(a) {
				p.addf(index(path, i), "invalid alias %q (must be non-empty, without whitespace)", a)
				ok = false
			}
		}
		if ok {
			*dst = list
		}
	}
}

// env reads KEY=VALUE entries. A key set twice is reported: which value
// the backend saw would depend on the C library.
func (p *parser) env(dst *[]string) setter {
	return func(v *yaml.Node, path string) {
		list, ok := p.strList(v, path)
		seen := make(map[string]bool)
		for i, e := range list {
			key, _, found := strings.Cut(e, "=")
			switch {
			case !found || !ValidEnvName(key):
				p.addf(index(path, i), "invalid entry %q (want KEY=VALUE)", e)
				ok = false
			case seen[key]:
				p.addf(index(path, i), "%s is set twice", key)
				ok = false
			}
			seen[key] = true
		}
		if ok {
			*dst = list
		}
	}
}

// ValidEnvName reports whether s is a portable environment variable name.
func ValidEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// placeholders reports, once each, the placeholders in values that hotswap
// does not expand. It returns whether all were fine.
func (p *parser) placeholders(path string, values ...string) bool {
	var extra []string
	if p.running {
		extra = []string{PlaceholderPID}
	}
	seen := make(map[string]bool)
	for _, s := range values {
		for _, problem := range checkPlaceholders(s, extra...) {
			if !seen[problem] {
				seen[problem] = true
				p.addf(path, "%s", problem)
			}
		}
	}
	return len(seen) == 0
}

// checkProxy checks that the proxy, once expanded, is an http(s) base URL.
func (p *parser) checkProxy(m *Model, path string) {
	// Expand would default an empty proxy; check what was written.
	r := strings.NewReplacer(PlaceholderPort, "1", PlaceholderModel, m.ID)
	u, err := url.Parse(r.Replace(m.Proxy))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" {
		p.addf(path, "invalid URL %q (want a base URL such as http://127.0.0.1:${PORT})", m.Proxy)
	}
}

// names checks that every alias and variant id names one thing only, and
// is no model's id, then builds the index Lookup uses.
func (p *parser) names(c *Config) {
	index := make(map[string]target)
	owner := make(map[string]string) // name -> what it names, for messages
	claim := func(path, what, name, by string, t target) {
		switch {
		case name == t.model && t.variant == nil:
			p.addf(path, "%s %q is the model's own id", what, name)
		case c.Models[name] != nil:
			p.addf(path, "%s %q is already the id of model %q", what, name, name)
		case owner[name] == by:
			p.addf(path, "%s %q is listed twice", what, name)
		case owner[name] != "":
			p.addf(path, "%s %q is already used by %s", what, name, owner[name])
		default:
			owner[name] = by
			index[name] = t
		}
	}
	for _, id := range c.ModelIDs {
		m := c.Models[id]
		model := fmt.Sprintf("model %q", id)
		for _, a := range m.Aliases {
			claim(join("models", id)+".aliases", "alias", a, model, target{model: id})
		}
		for _, v := range m.Variants {
			path := join(join("models", id)+".variants", v.ID)
			claim(join("models", id)+".variants", "variant", v.ID, model, target{model: id, variant: v})
			variant := fmt.Sprintf("variant %q", v.ID)
			for _, a := range v.Aliases {
				claim(path+".aliases", "alias", a, variant, target{model: id, variant: v})
			}
		}
	}
	c.names = index
}

// modes reads the named sets of models, resolving aliases to ids.
func (p *parser) modes(c *Config, n *yaml.Node) {
	for _, kv := range p.pairs(n, "modes") {
		if !validName(kv.key) {
			p.addf("modes", "invalid mode name %q (must be non-empty, without whitespace)", kv.key)
			continue
		}
		path := join("modes", kv.key)
		names, ok := p.strList(kv.value, path)
		if !ok {
			continue // already reported; resolving would only add noise
		}
		ids := make([]string, 0, len(names))
		seen := make(map[string]bool)
		for i, name := range names {
			m, ok := c.Resolve(name)
			switch {
			case !ok:
				p.addf(index(path, i), "unknown model %q", name)
			case !seen[m.ID]:
				seen[m.ID] = true
				ids = append(ids, m.ID)
			}
		}
		c.Modes[kv.key] = ids
	}
}
