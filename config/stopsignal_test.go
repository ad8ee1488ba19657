package config

import (
	"strings"
	"testing"
)

// TestStopSignal: stop_signal is term (the default, left "") or kill;
// anything else is refused.
func TestStopSignal(t *testing.T) {
	if m := mustParse(t, minimal).Models["m"]; m.StopSignal != "" {
		t.Errorf("default stop_signal %q, want \"\" (term)", m.StopSignal)
	}
	for _, v := range []string{StopTerm, StopKill} {
		if m := mustParse(t, minimal+"    stop_signal: "+v+"\n").Models["m"]; m.StopSignal != v {
			t.Errorf("stop_signal: %s read as %q", v, m.StopSignal)
		}
	}
	got := problems(t, minimal+"    stop_signal: int\n")
	if len(got) != 1 || !strings.Contains(got[0], "stop_signal") || !strings.Contains(got[0], "term, kill") {
		t.Errorf("stop_signal: int gave %q", got)
	}
}
