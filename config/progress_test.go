package config

import (
	"slices"
	"testing"
)

// TestLoadProgress: load_progress is off unless set; the file-wide value
// (under scheduling) is every model's default, and a model's own wins.
func TestLoadProgress(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want map[string]string // by model
	}{
		{"default", "models:\n  a:\n    cmd: s ${PORT}\n",
			map[string]string{"a": LoadProgressOff}},
		{"file-wide", "scheduling: {load_progress: reasoning}\nmodels:\n  a:\n    cmd: s ${PORT}\n",
			map[string]string{"a": LoadProgressReasoning}},
		{"model wins", "scheduling: {load_progress: reasoning}\nmodels:\n  a:\n    cmd: s ${PORT}\n    load_progress: content\n  b:\n    cmd: s ${PORT}\n    load_progress: off\n  c:\n    cmd: s ${PORT}\n",
			map[string]string{"a": LoadProgressContent, "b": LoadProgressOff, "c": LoadProgressReasoning}},
		{"model alone", "models:\n  a:\n    cmd: s ${PORT}\n    load_progress: reasoning\n  b:\n    cmd: s ${PORT}\n",
			map[string]string{"a": LoadProgressReasoning, "b": LoadProgressOff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range tt.want {
				if got := c.Models[id].LoadProgress; got != want {
					t.Errorf("%s: load_progress %q, want %q", id, got, want)
				}
			}
		})
	}
}

// TestLoadProgressInvalid: an unknown value is a problem naming the field,
// file-wide and per model.
func TestLoadProgressInvalid(t *testing.T) {
	got := problems(t, "scheduling: {load_progress: thinking}\nmodels:\n  a:\n    cmd: s ${PORT}\n    load_progress: yes\n")
	want := []string{
		`scheduling.load_progress: invalid value "thinking" (use off, reasoning, content)`,
		`models.a.load_progress: invalid value "yes" (use off, reasoning, content)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems\n%q\nwant\n%q", got, want)
	}
}

// TestLoadProgressReload: changing load_progress changes the model's
// settings without restarting its backend.
func TestLoadProgressReload(t *testing.T) {
	old, err := Parse([]byte("models:\n  a:\n    cmd: s ${PORT}\n"))
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse([]byte("scheduling: {load_progress: content}\nmodels:\n  a:\n    cmd: s ${PORT}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := Compare(old, next)
	if !slices.Equal(d.Changed, []string{"a"}) || len(d.Restart) != 0 || len(d.NeedsRestart) != 0 {
		t.Errorf("diff %+v, want a changed, nothing restarted", d)
	}
}
