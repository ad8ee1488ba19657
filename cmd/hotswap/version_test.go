package main

import "testing"

func TestModuleVersion(t *testing.T) {
	for _, c := range []struct{ stamped, module, want string }{
		{"v1.2.3", "v0.0.0-20260101000000-abcdef123456", "v1.2.3"}, // make: -X wins
		{"dev", "v1.4.0", "v1.4.0"},                                // go install ...@v1.4.0
		{"dev", "v0.0.0-20260101000000-abcdef123456+dirty", "v0.0.0-20260101000000-abcdef123456+dirty"},
		{"dev", "(devel)", "dev"},
		{"dev", "", "dev"},
	} {
		if got := moduleVersion(c.stamped, c.module); got != c.want {
			t.Errorf("moduleVersion(%q, %q) = %q, want %q", c.stamped, c.module, got, c.want)
		}
	}
}
