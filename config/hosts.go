package config

import (
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// hosts reads allowed_hosts: "*", a host name, "*.domain" (any name under
// domain) or an IP address, each without scheme or port.
func (p *parser) hosts(dst *[]string) setter {
	return func(v *yaml.Node, path string) {
		list, ok := p.strList(v, path)
		for i, h := range list {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			list[i] = h
			name := strings.TrimPrefix(h, "*.")
			if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil && name == h {
				continue
			}
			if h != "*" && !validHostName(name) {
				p.addf(index(path, i), "invalid host %q (want a name such as hotswap.lan, \"*.lan\", an IP address or \"*\"; no scheme, no port)", list[i])
				ok = false
			}
		}
		if ok {
			*dst = list
		}
	}
}

// validHostName reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' (not at a label's ends) and '_'.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}
