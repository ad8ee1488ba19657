package proxy

import (
	"bytes"
	"sync"
)

// Answers of a model with upstream_model name the model the backend was
// asked for (vLLM answers with its --served-model-name): the name the
// client asked for is put back. In a JSON answer, the top-level "model";
// in an event stream, that of each data: line's JSON. Also "model" one
// level down under "message" or "response", where Anthropic's
// message_start and the Responses API's events carry it.
//
// The answer is rewritten as it streams through, read by read, never held
// whole: a small state machine follows the JSON's strings and nesting
// across reads, and the string after a matching key is swapped for the
// client's name. Nothing else changes: other values, error events,
// comments and [DONE] pass as they came.

// renamer rewrites one answer. Its zero value with name set reads a JSON
// answer; with sse set, an event stream.
type renamer struct {
	name string // the client's name
	sse  bool

	// An event stream: where the current line stands.
	prefix int  // bytes of "data:" matched so far, -1: not a data line
	data   bool // in a data line's value

	json jsonFollow
}

// jsonFollow follows one JSON value as it streams by.
type jsonFollow struct {
	started bool // its first byte was seen
	ended   bool // it is not an object, or it has ended: nothing to do
	depth   int
	// In a string; esc: after a backslash; drop: the string is the one
	// being replaced, and its bytes are dropped.
	str, esc, drop bool
	// The key being read (at depth 1 or 2), up to keyMax bytes.
	inKey  bool
	key    [keyMax]byte
	keyLen int // keyMax+1: longer than any key looked for
	// What the object at each of depth 1 and 2 expects next.
	expectKey bool
	// obj: the container at each depth up to 2 is an object.
	obj [3]bool
	// target: the key just read names the value to replace; parent: the
	// key just read at depth 1 is "message" or "response"; under: the
	// object at depth 2 is that value.
	target, parent, under bool
	// value: after the colon of a target key, waiting for its value.
	value bool
}

const keyMax = 8

// feed appends src, rewritten, to dst.
func (r *renamer) feed(dst, src []byte) []byte {
	if !r.sse {
		return r.json.feed(dst, src, r.name)
	}
	for len(src) > 0 {
		if r.data {
			// The rest of the line is JSON.
			end := bytes.IndexAny(src, "\r\n")
			if end < 0 {
				return r.json.feed(dst, src, r.name)
			}
			dst = r.json.feed(dst, src[:end], r.name)
			src = src[end:]
			r.data = false
			continue
		}
		c := src[0]
		if c == '\n' || c == '\r' {
			r.prefix = 0
			dst = append(dst, c)
			src = src[1:]
			continue
		}
		if r.prefix < 0 {
			// Not a data line: up to its end, as it is.
			end := bytes.IndexAny(src, "\r\n")
			if end < 0 {
				return append(dst, src...)
			}
			dst = append(dst, src[:end]...)
			src = src[end:]
			continue
		}
		const field = "data:"
		switch {
		case r.prefix < len(field) && c == field[r.prefix]:
			r.prefix++
			if r.prefix == len(field) {
				r.data, r.json = true, jsonFollow{}
			}
		default:
			r.prefix = -1
		}
		dst = append(dst, c)
		src = src[1:]
	}
	return dst
}

// feed follows src, appending it to dst with the target's value replaced
// by name.
func (j *jsonFollow) feed(dst, src []byte, name string) []byte {
	from := 0 // src[from:i] is still to be copied
	for i := 0; i < len(src) && !j.ended; i++ {
		c := src[i]
		if j.str {
			if j.drop {
				// Dropped bytes: flush what came before them.
				if from < i {
					dst = append(dst, src[from:i]...)
				}
				from = i + 1
			}
			switch {
			case j.esc:
				j.esc = false
				j.keyByte(c)
			case c == '\\':
				j.esc = true
				j.keyLen = keyMax + 1 // keys looked for have no escapes
			case c == '"':
				j.str, j.drop = false, false
				if j.inKey {
					j.inKey = false
					j.keyDone()
				}
			case j.inKey:
				j.keyByte(c)
			case !j.drop:
				// A value's string: on to its end at once.
				if k := bytes.IndexAny(src[i:], `"\`); k < 0 {
					i = len(src) - 1
				} else {
					i += k - 1
				}
			}
			continue
		}
		if j.depth > 2 {
			// Nothing is looked for this deep: on to the next string or
			// bracket at once (an embedding's numbers, say).
			k := bytes.IndexAny(src[i:], `"{}[]`)
			if k < 0 {
				break
			}
			i += k
			c = src[i]
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		if !j.started {
			j.started = true
			if c != '{' {
				j.ended = true
				break
			}
		}
		if j.value && c == '"' {
			// The value to replace: the client's name in its place.
			dst = append(dst, src[from:i]...)
			dst = appendJSONString(dst, name)
			from = i + 1
			j.value = false
			j.str, j.drop = true, true
			continue
		}
		j.value = false
		parent, target := j.parent, j.target
		j.parent, j.target = false, false
		switch c {
		case '"':
			j.str = true
			if j.expectKey && (j.depth == 1 || j.depth == 2 && j.under) {
				j.inKey, j.keyLen = true, 0
			}
			j.expectKey = false
		case '{', '[':
			j.depth++
			obj := c == '{'
			if j.depth < len(j.obj) {
				j.obj[j.depth] = obj
			}
			j.expectKey = obj
			if j.depth == 2 {
				j.under = obj && parent
			}
		case '}', ']':
			j.depth--
			j.expectKey = false
			if j.depth <= 0 {
				j.ended = true
			}
		case ',':
			j.expectKey = j.depth < len(j.obj) && j.obj[j.depth]
		case ':':
			j.expectKey = false
			j.value = target
			j.parent = parent
		default:
			j.expectKey = false
		}
	}
	return append(dst, src[from:]...)
}

func (j *jsonFollow) keyByte(c byte) {
	if j.keyLen < keyMax {
		j.key[j.keyLen] = c
	}
	if j.keyLen <= keyMax {
		j.keyLen++
	}
}

// keyDone decides what the key just read names.
func (j *jsonFollow) keyDone() {
	if j.keyLen > keyMax {
		return
	}
	key := j.key[:j.keyLen]
	j.target = string(key) == "model"
	j.parent = j.depth == 1 && (string(key) == "message" || string(key) == "response")
}

// renameBuffers hold renamed answers' bytes between a read from the
// backend and the client's reads.
var renameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
