package proxy

import (
	"bytes"
	"regexp"
	"strings"
)

// No key leaves hotswap in a log line, an answer or an event. Requests are
// described by their method, path and model, never by their headers; what
// a client wrote is echoed back clipped and with any key in it redacted;
// and fasthttp's own errors, which quote the bytes it could not parse (the
// whole header block at times, Authorization included), are never passed
// on as they are.

const redacted = "[redacted]"

// credentialRE finds a credential written out as a header or a scheme and
// its value, in text that may quote a request.
var credentialRE = regexp.MustCompile(`(?i)((?:proxy-)?authorization|x-api-key|api-key|set-cookie|cookie)(\s*[:=]\s*)(?:(?:bearer|basic)\s+)?[^\r\n"\\,;]*|\b(bearer|basic)\s+[^\s"\\,;]+`)

// redactCredentials replaces the values of credentials that s quotes.
func redactCredentials(s string) string {
	return credentialRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := credentialRE.FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + sub[2] + redacted
		}
		return sub[4] + " " + redacted
	})
}

// redactKeys replaces hotswap's own keys in s: a client that put its key
// where hotswap echoes (a model name, a path) does not see it logged.
func (s *Server) redactKeys(text string) string {
	cfg := s.config()
	for _, keys := range [2][]string{cfg.APIKeys, cfg.AdminKeys} {
		for _, k := range keys {
			if k != "" {
				text = strings.ReplaceAll(text, k, redacted)
			}
		}
	}
	return text
}

// mentionsKey reports whether b holds one of hotswap's keys.
func (s *Server) mentionsKey(b []byte) bool {
	cfg := s.config()
	for _, keys := range [2][]string{cfg.APIKeys, cfg.AdminKeys} {
		for _, k := range keys {
			if k != "" && bytes.Contains(b, []byte(k)) {
				return true
			}
		}
	}
	return false
}

// describeParseError says in hotswap's own words what was wrong with a
// request fasthttp could not read. Nothing of the request is quoted.
func describeParseError(err error) string {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "duplicate content-length"):
		return "Content-Length is given more than once"
	case strings.Contains(msg, "content-length"):
		return "Content-Length is not a number of bytes"
	case strings.Contains(msg, "missing colon"):
		return "a header line has no colon"
	case strings.Contains(msg, "invalid request uri"), strings.Contains(msg, "invalid uri"):
		return "the request's path is not valid"
	case strings.Contains(msg, "transfer-encoding"):
		return "Transfer-Encoding is not valid"
	case strings.Contains(msg, "chunk"), strings.Contains(msg, "hex number"):
		return "the chunked body is malformed"
	case strings.Contains(msg, "http version"), strings.Contains(msg, "protocol"):
		return "the HTTP version is not supported"
	case strings.Contains(msg, "method"):
		return "the method is not valid"
	case strings.Contains(msg, "header"):
		return "the headers are malformed"
	}
	return "the request could not be read"
}

// safeError is an error's text up to the first thing it quotes (fasthttp
// quotes what the client sent), with credentials redacted: for the debug
// log, where the kind of failure matters and the client's bytes must not
// appear.
func safeError(err error) string {
	msg := err.Error()
	if i := strings.IndexAny(msg, "\"`"); i >= 0 {
		msg = strings.TrimRight(msg[:i], " :,") + " […]"
	}
	if i := strings.Index(msg, "buffer size="); i >= 0 {
		msg = strings.TrimRight(msg[:i], " :,") + " […]"
	}
	return redactCredentials(msg)
}
