package config

import (
	"slices"
	"strings"
	"testing"
)

func TestFiles(t *testing.T) {
	if m := mustParse(t, minimal).Models["m"]; m.Files != nil {
		t.Errorf("default files %q, want none", m.Files)
	}
	m := mustParse(t, minimal+"    files: [/models/a.gguf, \"/models/b-*.safetensors\"]\n").Models["m"]
	if want := []string{"/models/a.gguf", "/models/b-*.safetensors"}; !slices.Equal(m.Files, want) {
		t.Errorf("files read as %q, want %q", m.Files, want)
	}
	got := problems(t, minimal+"    files: /models/a.gguf\n")
	if len(got) != 1 || !strings.Contains(got[0], "files") || !strings.Contains(got[0], "list") {
		t.Errorf("files: a string gave %q", got)
	}
}

// TestReadAheadOff: read_ahead is on unless set to false.
func TestReadAheadOff(t *testing.T) {
	for _, c := range []struct {
		line string
		off  bool
	}{{"", false}, {"    read_ahead: true\n", false}, {"    read_ahead: false\n", true}} {
		if m := mustParse(t, minimal+c.line).Models["m"]; m.NoReadAhead != c.off {
			t.Errorf("%q: NoReadAhead %v, want %v", c.line, m.NoReadAhead, c.off)
		}
	}
	got := problems(t, minimal+"    read_ahead: no\n")
	if len(got) != 1 || !strings.Contains(got[0], "read_ahead") {
		t.Errorf("read_ahead: no gave %q", got)
	}
}
