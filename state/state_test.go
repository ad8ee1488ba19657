package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hotswap/hotswap/config"
)

const mib = 1 << 20

func model(id string, cmd []string, env ...string) *config.Model {
	return &config.Model{ID: id, Cmd: cmd, Env: env}
}

func TestKeyIsTheCommand(t *testing.T) {
	base := model("llama", []string{"llama-server", "-m", "/m/8b-q4.gguf", "--port", "${PORT}", "-c", "8192"}, "A=1", "B=2")
	k := Key(base)
	same := *base
	same.Env = []string{"B=2", "A=1"}         // order does not matter
	same.Parallel, same.TTL = 8, 3600_000_000 // nor settings that do not change memory
	if Key(&same) != k {
		t.Error("the key changed with env order or unrelated settings")
	}
	for name, m := range map[string]*config.Model{
		"another file":    model("llama", []string{"llama-server", "-m", "/m/8b-q8.gguf", "--port", "${PORT}", "-c", "8192"}, "A=1", "B=2"),
		"another context": model("llama", []string{"llama-server", "-m", "/m/8b-q4.gguf", "--port", "${PORT}", "-c", "4096"}, "A=1", "B=2"),
		"another env":     model("llama", base.Cmd, "A=1", "B=3"),
		"another model":   model("other", base.Cmd, "A=1", "B=2"),
		"split otherwise": model("llama", []string{"llama-server -m", "/m/8b-q4.gguf", "--port", "${PORT}", "-c", "8192"}, "A=1", "B=2"),
	} {
		if Key(m) == k {
			t.Errorf("%s: the same key", name)
		}
	}
}

func TestFootprintsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "footprints.json")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Observe("a@1", 100*mib, 0) || f.Observe("a@1", 50*mib, 0) || f.Observe("a@1", 100*mib+5, 0) ||
		!f.Observe("a@1", 50*mib, 7*mib) {
		t.Error("Observe should report real growth only")
	}
	if err := f.SetSection(ModeSection, map[string]any{"active": "art"}); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fp := g.Footprint("a@1"); fp.RAM != 100*mib || fp.VRAM != 7*mib {
		t.Errorf("after reopening: %+v", fp)
	}
	if fp := g.Footprint("a@2"); fp.RAM != 0 {
		t.Errorf("another command of a has %+v", fp)
	}
	var mode struct{ Active string }
	if ok, err := g.Section(ModeSection, &mode); !ok || err != nil || mode.Active != "art" {
		t.Errorf("the mode section: %v %v %+v", ok, err, mode)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestAChangedCommandLearnsAfresh is the case: a name that once
// served a 2 GiB backend is given a 300 MiB one.
func TestAChangedCommandLearnsAfresh(t *testing.T) {
	f, _ := Open(filepath.Join(t.TempDir(), "s.json"))
	big := model("chat", []string{"llama-server", "-m", "big.gguf"})
	small := model("chat", []string{"llama-server", "-m", "small.gguf"})
	f.Observe(Key(big), 2048*mib, 0)
	if fp := f.Footprint(Key(small)); fp.RAM != 0 {
		t.Fatalf("the small command is planned with the big one's %d MiB", fp.RAM/mib)
	}
	f.Observe(Key(small), 300*mib, 0)
	if f.Footprint(Key(small)).RAM != 300*mib || f.Footprint(Key(big)).RAM != 2048*mib {
		t.Error("each command keeps its own footprint")
	}
	// Forgetting a model forgets it under every command.
	if n, err := f.Forget("chat"); n != 2 || err != nil {
		t.Fatalf("Forget: %d %v", n, err)
	}
	if f.Footprint(Key(small)).RAM != 0 || f.Footprint(Key(big)).RAM != 0 {
		t.Error("a forgotten footprint is still there")
	}
}

// TestEarlierFilesAreCarriedOver: a version 1 file kept footprints by
// model name: each still counts for its model until the model is
// measured under its command; the mode memory is kept.
func TestEarlierFilesAreCarriedOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "footprints.json")
	os.WriteFile(path, []byte(`{"version":1,"models":{"chat":{"ram":2147483648,"vram":0},"x":{"ram":-1}},
		"mode":{"active":"art","remembered":["chat"]}}`), 0o644)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	chat := model("chat", []string{"srv", "--port", "${PORT}"})
	if fp := f.Footprint(Key(chat)); fp.RAM != 2<<30 {
		t.Errorf("the earlier footprint is not counted: %+v", fp)
	}
	var mode struct {
		Active     string
		Remembered []string
	}
	if ok, _ := f.Section(ModeSection, &mode); !ok || mode.Active != "art" || len(mode.Remembered) != 1 {
		t.Errorf("the mode memory: %+v", mode)
	}
	// Measured under its command, the figure by name goes.
	f.Observe(Key(chat), 300*mib, 0)
	if fp := f.Footprint(Key(chat)); fp.RAM != 300*mib {
		t.Errorf("after measuring: %+v", fp)
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fp := g.Footprint(Key(model("chat", []string{"other"}))); fp.RAM != 0 {
		t.Errorf("the figure by name outlived the measurement: %+v", fp)
	}
}

func TestCorruptFileIsIgnored(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":    "{not json",
		"truncated":  `{"version":2,"footprints":{"a@1":{"ram":1`,
		"wrong kind": `[1,2,3]`,
		"version":    `{"version":99}`,
	} {
		path := filepath.Join(t.TempDir(), "state.json")
		os.WriteFile(path, []byte(content), 0o644)
		f, err := Open(path)
		if err == nil {
			t.Errorf("%s: no error reported", name)
		}
		if f == nil || f.Footprint("a@1").RAM != 0 {
			t.Fatalf("%s: unusable state", name)
		}
		// And the next save replaces it with a good file.
		f.Observe("a@1", 5, 0)
		if err := f.Save(); err != nil {
			t.Fatal(err)
		}
		if g, err := Open(path); err != nil || g.Footprint("a@1").RAM != 5 {
			t.Errorf("%s: rewritten file: %v", name, err)
		}
	}
}

func TestUnwritableDirIsAnError(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o644)
	f, _ := Open(filepath.Join(blocker, "state.json"))
	f.Observe("a@1", 1, 1)
	if err := f.Save(); err == nil {
		t.Error("saving under a file succeeded")
	}
}

func TestInMemoryOnly(t *testing.T) {
	f, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	f.Observe("a@1", 5, 0)
	if err := f.Save(); err != nil || f.Footprint("a@1").RAM != 5 {
		t.Errorf("in memory: %v", err)
	}
}

// TestAsleepFootprints: what a model holds asleep is kept apart from its
// footprint awake, persists, is forgotten with the model, and neither
// takes nor drops a figure an earlier hotswap kept by name alone.
func TestAsleepFootprints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "footprints.json")
	os.WriteFile(path, []byte(`{"version":1,"models":{"chat":{"ram":2147483648,"vram":0}}}`), 0o644)
	f, _ := Open(path)
	chat := model("chat", []string{"srv", "--port", "${PORT}"})
	if fp := f.Footprint(AsleepKey(chat)); fp.RAM != 0 {
		t.Errorf("asleep, before any measurement: %+v, want nothing (the figure by name is awake)", fp)
	}
	if !f.Observe(AsleepKey(chat), 100*mib, 10*mib) {
		t.Error("the first asleep figure was not learned")
	}
	if fp := f.Footprint(Key(chat)); fp.RAM != 2<<30 {
		t.Errorf("measuring asleep dropped the awake figure by name: %+v", fp)
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	g, _ := Open(path)
	if fp := g.Footprint(AsleepKey(chat)); fp.RAM != 100*mib || fp.VRAM != 10*mib {
		t.Errorf("asleep after reopening: %+v", fp)
	}
	if n, err := g.Forget("chat"); err != nil || n != 2 {
		t.Errorf("Forget: %d, %v; want the awake and asleep figures gone", n, err)
	}
}
