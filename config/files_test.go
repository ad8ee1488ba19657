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
