package swapper

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFootprintsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "footprints.json")
	f, err := LoadFootprints(path)
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	if !f.Observe("a", 100*mib, 0) || f.Observe("a", 50*mib, 0) || f.Observe("a", 100*mib+5, 0) ||
		!f.Observe("a", 50*mib, 7*mib) {
		t.Error("Observe should report real growth only")
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	g, err := LoadFootprints(path)
	if err != nil {
		t.Fatal(err)
	}
	if fp := g.Get("a"); fp.RAM != 100*mib || fp.VRAM != 7*mib {
		t.Errorf("after reload: %+v", fp)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestFootprintsCorruptFileIsIgnored(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":    "{not json",
		"truncated":  `{"version":1,"models":{"a":{"ram":1`,
		"wrong kind": `[1,2,3]`,
		"version":    `{"version":99,"models":{}}`,
	} {
		path := filepath.Join(t.TempDir(), "footprints.json")
		os.WriteFile(path, []byte(content), 0o644)
		f, err := LoadFootprints(path)
		if err == nil {
			t.Errorf("%s: no error reported", name)
		}
		if f == nil || f.Get("a").RAM != 0 {
			t.Fatalf("%s: unusable footprints", name)
		}
		// And the next save replaces it with a good file.
		f.Observe("a", 5, 0)
		if err := f.Save(); err != nil {
			t.Fatal(err)
		}
		if g, err := LoadFootprints(path); err != nil || g.Get("a").RAM != 5 {
			t.Errorf("%s: rewritten file: %v", name, err)
		}
	}
}

func TestFootprintsUnwritableDirIsAnError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o644)
	f, _ := LoadFootprints(filepath.Join(blocker, "footprints.json"))
	f.Observe("a", 1, 1)
	if err := f.Save(); err == nil {
		t.Error("saving under a file succeeded")
	}
}
