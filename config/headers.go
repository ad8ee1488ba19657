package config

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// notForwardable are the headers a model may not set: they describe one
// connection or the body's framing, which hotswap owns.
var notForwardable = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"te": true, "trailer": true, "upgrade": true, "content-length": true, "host": true,
}

// headers reads a model's headers: a mapping of name to value.
func (p *parser) headers(dst *[]Header) setter {
	return func(v *yaml.Node, path string) {
		var list []Header
		ok := true
		seen := make(map[string]string) // lower-cased name -> as written
		for _, kv := range p.pairs(v, path) {
			at := join(path, kv.key)
			value, good := p.scalar(kv.value, at)
			switch {
			case !good:
				ok = false
			case !validHeaderName(kv.key):
				p.addf(path, "invalid header name %q", kv.key)
				ok = false
			case seen[strings.ToLower(kv.key)] != "":
				p.addf(at, "set twice (as %s too): header names ignore case", seen[strings.ToLower(kv.key)])
				ok = false
			case notForwardable[strings.ToLower(kv.key)]:
				p.addf(at, "hotswap sets %s itself", kv.key)
				ok = false
			case strings.ContainsAny(value, "\r\n\x00"):
				p.addf(at, "the value holds a line break or NUL")
				ok = false
			default:
				seen[strings.ToLower(kv.key)] = kv.key
				list = append(list, Header{Name: kv.key, Value: value})
			}
		}
		if ok {
			*dst = list
		}
	}
}

// headerNameRE is an HTTP field name (RFC 9110's token).
var headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

func validHeaderName(s string) bool { return headerNameRE.MatchString(s) }
