package proxy

import (
	"bytes"
	"sync"

	"github.com/hotswap/hotswap/config"
)

// Shaping a request: a model's (or variant's) params and its
// upstream_model change the JSON body on its way to the backend. The body
// was validated already (jsonModel); it is walked once more, never decoded
// into a tree: the walk notes edits (byte ranges replaced, removed or
// inserted at), and the shaped body is the original with those spliced in,
// so that whatever no rule touches stays byte for byte as the client sent
// it (key order, number text, spacing).
//
// What each rule does, applied to every occurrence of its key (a key the
// client sent twice is shaped twice, so that whichever a backend reads is
// shaped):
//
//   - strip removes the key;
//   - set replaces the key's value, or adds the key;
//   - default adds the key where the client sent none, or sent null;
//   - a key both stripped and set (or defaulted) ends up set;
//   - a nested key (chat_template_kwargs.enable_thinking) lies in the
//     objects its path names: set or defaulted where the outer object is
//     absent (or null), the object is made; where the client sent
//     something else than an object there (a string, a number), a set
//     replaces it with an object holding what is set and defaulted in it,
//     while defaults alone leave the client's value as it is;
//   - upstream_model replaces the value of "model", where the client sent
//     one.
//
// Bodies that are not JSON objects are never shaped.

// shapeOp is what a rule does at its key.
type shapeOp uint8

const (
	opNone    shapeOp = iota // nothing here: rules lie deeper
	opSet                    // replace or add
	opDefault                // add where absent or null
	opRename                 // replace where present (upstream_model)
)

// shapeNode is the rules for one key of an object, and for the keys inside
// its value.
type shapeNode struct {
	key      string
	op       shapeOp
	strip    bool   // the client's value is removed (before op)
	value    []byte // op's value, JSON text
	children []*shapeNode
	// absent is what stands at this key when the client sent nothing
	// there: op's value, or an object of what the children add; nil when
	// nothing is added.
	absent []byte
	// member is `"key":absent`, for adding the key to an object.
	member []byte
	// hasSet: a set lies here or inside; a value that is no object is
	// replaced to make room for it.
	hasSet bool
}

// shapePlan is the compiled form of one set of params and its model's
// upstream_model: the rules for the top-level keys of a body.
type shapePlan struct {
	root []*shapeNode
}

// compileShape returns the plan for p and upstream, or nil when they
// change nothing.
func compileShape(p *config.Params, upstream string) *shapePlan {
	if (p == nil || p.Empty()) && upstream == "" {
		return nil
	}
	var root []*shapeNode
	at := func(path config.ParamPath) *shapeNode {
		level := &root
		var n *shapeNode
		for _, k := range path {
			n = nil
			for _, c := range *level {
				if c.key == k {
					n = c
					break
				}
			}
			if n == nil {
				n = &shapeNode{key: k}
				*level = append(*level, n)
			}
			level = &n.children
		}
		return n
	}
	if p != nil {
		for _, s := range p.Strip {
			if len(s) > 0 {
				at(s).strip = true
			}
		}
		for _, r := range p.Set {
			if len(r.Path) > 0 {
				n := at(r.Path)
				n.op, n.value = opSet, r.Value
			}
		}
		for _, r := range p.Default {
			if len(r.Path) == 0 {
				continue
			}
			n := at(r.Path)
			if n.op == opSet {
				continue // config refuses both; set wins
			}
			n.op, n.value = opDefault, r.Value
			if n.strip {
				// Stripped, the client's value is gone, so the default
				// always applies: it is a set.
				n.op = opSet
			}
		}
	}
	if upstream != "" {
		n := at(config.ParamPath{"model"})
		n.op, n.value = opRename, appendJSONString(nil, upstream)
	}
	for _, n := range root {
		n.finish()
	}
	return &shapePlan{root: root}
}

// finish works out what n adds where its key is absent, below first.
func (n *shapeNode) finish() {
	var inner []byte
	for _, c := range n.children {
		c.finish()
		n.hasSet = n.hasSet || c.hasSet
		if c.member == nil {
			continue
		}
		if inner == nil {
			inner = append(inner, '{')
		} else {
			inner = append(inner, ',')
		}
		inner = append(inner, c.member...)
	}
	if inner != nil {
		inner = append(inner, '}')
	}
	switch n.op {
	case opSet:
		n.hasSet = true
		n.absent = n.value
	case opDefault:
		n.absent = n.value
	case opNone:
		n.absent = inner
	}
	if n.absent != nil {
		n.member = append(append(appendJSONString(nil, n.key), ':'), n.absent...)
	}
}

// edit is one change to a body: the bytes in [start, end) give way to ins
// (preceded by a comma when comma is set).
type edit struct {
	start, end int
	ins        []byte
	comma      bool
}

// shaper holds one walk's edits; shapers are pooled.
type shaper struct {
	in    []byte
	edits []edit
	bad   bool // the body was not the valid JSON it was said to be
}

var shapers = sync.Pool{New: func() any { return &shaper{edits: make([]edit, 0, 16)} }}

// shape walks body (a valid JSON object) with plan and returns the size
// of the shaped body and the shaper that holds its edits, or nil when
// nothing changes. The caller writes it with write, then puts the shaper
// back with done.
func (plan *shapePlan) shape(body []byte) (*shaper, int) {
	sh := shapers.Get().(*shaper)
	sh.in, sh.edits, sh.bad = body, sh.edits[:0], false
	if i := skipSpace(body, 0); i < len(body) && body[i] == '{' {
		end := sh.object(i, plan.root)
		sh.bad = sh.bad || skipSpace(body, end) != len(body)
	} else {
		sh.bad = true
	}
	if len(sh.edits) == 0 || sh.bad {
		sh.done()
		return nil, len(body)
	}
	n := len(body)
	for _, e := range sh.edits {
		n += len(e.ins) - (e.end - e.start)
		if e.comma {
			n++
		}
	}
	return sh, n
}

// write appends the shaped body to dst.
func (sh *shaper) write(dst []byte) []byte {
	at := 0
	for _, e := range sh.edits {
		dst = append(dst, sh.in[at:e.start]...)
		if e.comma {
			dst = append(dst, ',')
		}
		dst = append(dst, e.ins...)
		at = e.end
	}
	return append(dst, sh.in[at:]...)
}

func (sh *shaper) done() {
	sh.in = nil
	if cap(sh.edits) > 1024 {
		sh.edits = make([]edit, 0, 16)
	}
	for i := range sh.edits {
		sh.edits[i].ins = nil
	}
	sh.edits = sh.edits[:0]
	shapers.Put(sh)
}

func (sh *shaper) add(e edit) { sh.edits = append(sh.edits, e) }

// object applies rules to the object at in[open] (a '{'). The body was validated
// (jsonModel); should it not be valid after all, the walk stops and bad
// is set, and the body goes upstream as it is. It returns the index just
// past the object.
func (sh *shaper) object(open int, rules []*shapeNode) int {
	b := sh.in
	// seen marks the rules whose key was found; most levels have few.
	var seenBits uint64
	var seenMore []bool
	if len(rules) > 64 {
		seenMore = make([]bool, len(rules))
	}
	kept := false       // a member is left before the current one
	lastEnd := open + 1 // where the next member would be added
	i := skipSpace(b, open+1)
	if i < len(b) && b[i] == '}' {
		sh.finishObject(rules, seenBits, seenMore, kept, lastEnd)
		return i + 1
	}
	for {
		keyStart := i
		if keyStart >= len(b) || b[keyStart] != '"' {
			sh.bad = true
			return len(b)
		}
		keyEnd := skipString(b, keyStart)
		if keyEnd < 0 {
			sh.bad = true
			return len(b)
		}
		colon := skipSpace(b, keyEnd)
		if colon >= len(b) || b[colon] != ':' {
			sh.bad = true
			return len(b)
		}
		v := skipSpace(b, colon+1)
		valEnd := skipValue(b, v)
		if valEnd <= v {
			sh.bad = true
			return len(b)
		}
		next := skipSpace(b, valEnd) // ',' or '}'
		if next >= len(b) || b[next] != ',' && b[next] != '}' {
			sh.bad = true
			return len(b)
		}
		last := b[next] == '}'
		// The key, unquoted: as it is unless it has escapes (rare).
		key := b[keyStart+1 : keyEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			key = []byte(unquote(b[keyStart:keyEnd]))
		}
		var rule *shapeNode
		for r, n := range rules {
			if string(key) == n.key {
				rule = n
				if r < 64 {
					seenBits |= 1 << r
				} else {
					seenMore[r] = true
				}
				break
			}
		}
		removed := false
		if rule != nil {
			removed = sh.member(rule, keyStart, v, valEnd, next, last, kept)
		}
		if sh.bad {
			return len(b)
		}
		if !removed {
			kept = true
		}
		lastEnd = valEnd
		if last {
			sh.finishObject(rules, seenBits, seenMore, kept, lastEnd)
			return next + 1
		}
		i = skipSpace(b, next+1)
	}
}

// member applies rule to a member of an object: key at keyStart, value in
// [v, valEnd), followed by a ',' or the '}' at next (last). It reports
// whether the member was removed.
func (sh *shaper) member(rule *shapeNode, keyStart, v, valEnd, next int, last, kept bool) bool {
	b := sh.in
	null := b[v] == 'n'
	switch {
	case rule.op == opSet || rule.op == opRename:
		sh.add(edit{start: v, end: valEnd, ins: rule.value})
		return false
	case rule.strip:
		if rule.absent != nil {
			// Stripped, then made again by what is set inside it.
			sh.add(edit{start: v, end: valEnd, ins: rule.absent})
			return false
		}
		// A removed member takes the comma before it along, or the one
		// after it when no member is left before it.
		switch {
		case kept:
			sh.add(edit{start: commaBefore(b, keyStart), end: valEnd})
		case !last:
			sh.add(edit{start: keyStart, end: skipSpace(b, next+1)})
		default:
			sh.add(edit{start: keyStart, end: valEnd})
		}
		return true
	case null:
		if rule.absent != nil {
			sh.add(edit{start: v, end: valEnd, ins: rule.absent})
		}
	case b[v] == '{' && len(rule.children) > 0:
		sh.object(v, rule.children)
	case rule.op == opNone && b[v] != '{' && rule.hasSet:
		// Something else than an object where a set needs one.
		sh.add(edit{start: v, end: valEnd, ins: rule.absent})
	}
	return false
}

// skipString returns the index just past the string at b[i] (a quote),
// or -1. Unlike scanString it does not validate: it is for bodies
// validated already, and finds the closing quote at memchr's speed.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		// A quote after an odd number of backslashes is escaped.
		bs := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
	return -1
}

// skipValue returns the index just past the value at b[i], or -1 where
// there is none; like skipString, it is for bodies validated already
// (on others it returns some index within b, or -1, never panics).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	// A number or a literal: up to what ends it.
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}

// finishObject adds the rules' keys that the object lacked, after its
// last member (at lastEnd).
func (sh *shaper) finishObject(rules []*shapeNode, seenBits uint64, seenMore []bool, kept bool, lastEnd int) {
	for r, n := range rules {
		seen := r < 64 && seenBits&(1<<r) != 0 || r >= 64 && seenMore[r]
		if seen || n.member == nil || n.op == opRename {
			continue
		}
		sh.add(edit{start: lastEnd, end: lastEnd, ins: n.member, comma: kept})
		kept = true
	}
}

// commaBefore returns the index of the ',' before the member at i.
func commaBefore(b []byte, i int) int {
	for i--; b[i] != ','; i-- {
	}
	return i
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// shapePlans are the compiled rules of a configuration, by the params
// they come from (a model's or a variant's, see config.Model.RequestParams).
type shapePlans map[*config.Params]*shapePlan

// compileShapes compiles every model's and variant's rules.
func compileShapes(cfg *config.Config) *shapePlans {
	plans := shapePlans{}
	for _, m := range cfg.Models {
		if plan := compileShape(&m.Params, m.UpstreamModel); plan != nil {
			plans[&m.Params] = plan
		}
		for _, v := range m.Variants {
			if plan := compileShape(&v.Params, m.UpstreamModel); plan != nil {
				plans[&v.Params] = plan
			}
		}
	}
	return &plans
}

// shapePlan returns the plan for a request that named m (or its variant
// v), or nil when its body goes upstream as it is. A request that costs
// nothing costs two comparisons here.
func (s *Server) shapePlan(m *config.Model, v *config.Variant) *shapePlan {
	p := m.RequestParams(v)
	if p.Empty() && m.UpstreamModel == "" {
		return nil
	}
	if plan, ok := (*s.shapes.Load())[p]; ok {
		return plan
	}
	// A configuration that came after the plans were compiled (a reload
	// as it happens): this once, compiled for the request.
	return compileShape(p, m.UpstreamModel)
}

// clientName returns the config's own copy of name, one of the names m (or
// v) goes by, so that it outlives the request's body without a copy.
func clientName(m *config.Model, v *config.Variant, name string) string {
	if v != nil {
		if name == v.ID {
			return v.ID
		}
		for _, a := range v.Aliases {
			if a == name {
				return a
			}
		}
	}
	if name == m.ID {
		return m.ID
	}
	for _, a := range m.Aliases {
		if a == name {
			return a
		}
	}
	return m.ID
}
