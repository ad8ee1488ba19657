package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestSleepPreset: `sleep: vllm` is vLLM's level 1 sleep and its wake,
// with the default timeout and nothing declared of what it holds asleep.
func TestSleepPreset(t *testing.T) {
	if m := mustParse(t, minimal).Models["m"]; m.Sleep != nil {
		t.Errorf("a model without sleep: got %+v", m.Sleep)
	}
	m := mustParse(t, minimal+"    sleep: vllm\n").Models["m"]
	want := &Sleep{Sleep: Action{Method: "POST", Path: "/sleep?level=1"}, Wake: Action{Method: "POST", Path: "/wake_up"},
		Timeout: DefaultSleepTimeout}
	if !reflect.DeepEqual(m.Sleep, want) {
		t.Errorf("sleep: vllm read as %+v, want %+v", m.Sleep, want)
	}
}

// TestSleepMapping: sleep and wake are HTTP requests or commands (with
// ${PID}, ${PORT}, ${MODEL}); memory and timeout are read as sizes and
// durations.
func TestSleepMapping(t *testing.T) {
	m := mustParse(t, minimal+`    sleep:
      sleep: POST /sleep?level=2
      wake: [/bin/sh, -c, "kill -CONT ${PID}"]
      memory: {ram: 2GiB, vram: 512MiB}
      timeout: 30s
`).Models["m"]
	sl := m.Sleep
	if sl == nil {
		t.Fatal("sleep not read")
	}
	if !reflect.DeepEqual(sl.Sleep, Action{Method: "POST", Path: "/sleep?level=2"}) {
		t.Errorf("sleep %+v", sl.Sleep)
	}
	if !reflect.DeepEqual(sl.Wake.Argv, []string{"/bin/sh", "-c", "kill -CONT ${PID}"}) || sl.Wake.Method != "" {
		t.Errorf("wake %+v", sl.Wake)
	}
	if sl.Memory != (Need{RAM: 2 << 30, VRAM: 512 << 20}) || sl.Timeout.String() != "30s" {
		t.Errorf("memory %+v, timeout %v", sl.Memory, sl.Timeout)
	}
	if s := sl.Wake.String(); s != "/bin/sh -c kill -CONT ${PID}" {
		t.Errorf("wake shown as %q", s)
	}
	m = mustParse(t, minimal+"    sleep:\n      sleep: docker pause hs-${MODEL}\n      wake: docker unpause hs-${MODEL}\n").Models["m"]
	if !reflect.DeepEqual(m.Sleep.Sleep.Argv, []string{"docker", "pause", "hs-${MODEL}"}) {
		t.Errorf("a command given as a string: %+v", m.Sleep.Sleep)
	}
}

// TestSleepProblems: each mistake is named with its path.
func TestSleepProblems(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"    sleep: vlm\n", `unknown preset "vlm"`},
		{"    sleep: {sleep: POST /sleep}\n", "needs both sleep and wake"},
		{"    sleep: {wake: POST /wake_up}\n", "needs both sleep and wake"},
		{"    sleep: {sleep: POST /sleep, wake: POST /wake_up, memory: {ram: lots}}\n", "models.m.sleep.memory.ram"},
		{"    sleep: {sleep: POST /sleep, wake: POST /wake_up, timeout: 0s}\n", "models.m.sleep.timeout"},
		{"    sleep: {sleep: POST /sleep, wake: POST /wake_up, snooze: 1}\n", `unknown key "snooze"`},
		{"    sleep:\n      sleep: POST /s/${PORT}\n      wake: POST /wake_up\n", "may not hold placeholders"},
		{"    sleep: {sleep: \"\", wake: POST /wake_up}\n", "models.m.sleep.sleep: must not be empty"},
		{"    sleep:\n      sleep: kill ${PIDS}\n      wake: POST /wake_up\n", "models.m.sleep.sleep"},
		{"    sleep: [a]\n", "models.m.sleep"},
	} {
		got := problems(t, minimal+c.yaml)
		if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), c.want) {
			t.Errorf("%q gave %q, want a problem with %q", c.yaml, got, c.want)
		}
	}
}

// TestSleepPresetInAMapping: a preset in the mapping form gives sleep and
// wake, which one given beside it replaces, with memory and timeout read.
func TestSleepPresetInAMapping(t *testing.T) {
	m := mustParse(t, minimal+`    sleep:
      wake: POST /wake_up?tags=weights
      preset: vllm
      memory: {ram: 40GiB}
`).Models["m"]
	if m.Sleep == nil || m.Sleep.Sleep.String() != "POST /sleep?level=1" || m.Sleep.Wake.String() != "POST /wake_up?tags=weights" ||
		m.Sleep.Memory.RAM != 40<<30 || m.Sleep.Timeout != DefaultSleepTimeout {
		t.Errorf("read as %+v", m.Sleep)
	}
	if got := problems(t, minimal+"    sleep: {preset: vlm}\n"); len(got) == 0 || !strings.Contains(got[0], `unknown preset "vlm"`) {
		t.Errorf("preset: vlm gave %q", got)
	}
}
