package config

import (
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// envRefRE matches a ${env:NAME} reference: a value taken from hotswap's
// environment when the file is read, so that keys stay out of the file.
var envRefRE = regexp.MustCompile(`\$\{env:([^}]*)\}`)

// expandEnv replaces each ${env:NAME} in s with that variable's value. A
// variable that is not set, or a bad name, is a problem at path; the value
// is never put in a message.
func (p *parser) expandEnv(path, s string) (string, bool) {
	ok := true
	out := envRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRefRE.FindStringSubmatch(ref)[1]
		if !validEnvName(name) {
			p.addf(path, "invalid environment variable name %q in %s", name, ref)
			ok = false
			return ""
		}
		v, set := os.LookupEnv(name)
		if !set {
			p.addf(path, "the environment variable %s is not set", name)
			ok = false
		}
		return v
	})
	return out, ok
}

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
			if good {
				value, good = p.expandEnv(at, value)
			}
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
