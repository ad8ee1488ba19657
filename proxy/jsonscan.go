package proxy

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// jsonModel returns the top-level "model" string of a JSON object, and
// whether its "stream" is true. The body is validated as it is walked, in
// one pass (a malformed request must not cost a model swap), and never
// decoded into a tree. It accepts exactly what encoding/json.Valid does.
//
// The model aliases body when it holds no escapes: it is valid while the
// request is, and must be cloned to be kept beyond it.
func jsonModel(body []byte) (model string, stream bool, err error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		if !json.Valid(body) {
			return "", false, errMalformedJSON
		}
		return "", false, errNotObject
	}
	found, notText := false, false
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			if i >= len(body) || body[i] != '"' {
				return "", false, errMalformedJSON
			}
			keyStart, keyEnd := i, scanString(body, i)
			if keyEnd < 0 {
				return "", false, errMalformedJSON
			}
			i = skipSpace(body, keyEnd)
			if i >= len(body) || body[i] != ':' {
				return "", false, errMalformedJSON
			}
			v := skipSpace(body, i+1)
			valEnd := scanValue(body, v, 1)
			if valEnd < 0 {
				return "", false, errMalformedJSON
			}
			switch key := body[keyStart:keyEnd]; {
			case isKey(key, "model"):
				// The last one counts, as with encoding/json.
				found, notText, model = true, body[v] != '"', ""
				if !notText {
					model = unquote(body[v:valEnd])
				}
			case isKey(key, "stream"):
				stream = string(body[v:valEnd]) == "true"
			}
			i = skipSpace(body, valEnd)
			if i < len(body) && body[i] == ',' {
				i = skipSpace(body, i+1)
				continue
			}
			if i < len(body) && body[i] == '}' {
				i++
				break
			}
			return "", false, errMalformedJSON
		}
	}
	if skipSpace(body, i) != len(body) {
		return "", false, errMalformedJSON
	}
	if notText {
		return "", false, errModelNotText
	}
	if !found || model == "" {
		return "", stream, errNoModel
	}
	return model, stream, nil
}

// unquote returns the text of a valid JSON string: without a copy when it
// is plain UTF-8 without escapes (the usual model name), decoded as
// encoding/json decodes it otherwise (bad UTF-8 becomes U+FFFD).
func unquote(quoted []byte) string {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return unsafe.String(unsafe.SliceData(inner), len(inner))
	}
	var s string
	_ = json.Unmarshal(quoted, &s) // valid: scanned already
	return s
}

// isKey matches a quoted key against name, escapes included.
func isKey(quoted []byte, name string) bool {
	if len(quoted) == len(name)+2 && string(quoted[1:len(quoted)-1]) == name {
		return true
	}
	return bytes.IndexByte(quoted, '\\') >= 0 && unquote(quoted) == name
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// maxDepth is encoding/json's limit on nesting, kept so that both accept
// the same bodies.
const maxDepth = 10000

// scanValue returns the index just past the JSON value at b[i], or -1 if
// there is no valid one there. depth is the nesting of that value.
func scanValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{' || c == '[':
		if depth > maxDepth {
			return -1
		}
		return scanComposite(b, i, depth)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	}
	return -1
}

// scanComposite scans an object or an array starting at b[i].
func scanComposite(b []byte, i, depth int) int {
	object, end := b[i] == '{', byte(']')
	if object {
		end = '}'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == end {
		return i + 1
	}
	for {
		if object {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			if i = scanString(b, i); i < 0 {
				return -1
			}
			if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
				return -1
			}
			i = skipSpace(b, i+1)
		}
		if i = scanValue(b, i, depth+1); i < 0 {
			return -1
		}
		i = skipSpace(b, i)
		switch {
		case i >= len(b):
			return -1
		case b[i] == ',':
			i = skipSpace(b, i+1)
		case b[i] == end:
			return i + 1
		default:
			return -1
		}
	}
}

// scanString returns the index just past the string starting at b[i] (a
// quote), or -1: control characters must be escaped, and escapes must be
// JSON's. Bytes that are not UTF-8 pass, as with encoding/json.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
