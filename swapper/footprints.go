package swapper

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Footprint is the most memory a model's backend has been measured to use.
type Footprint struct {
	RAM     int64     `json:"ram"`
	VRAM    int64     `json:"vram"`
	Updated time.Time `json:"updated"`
}

// Footprints remembers learned footprints across restarts, in a small JSON
// file. A missing file is an empty memory; a corrupt or unreadable one is
// reported and ignored, never fatal. Writes are atomic (a temporary file
// renamed over the old one), so a crash never leaves half a file.
//
// The same file keeps what a mode switch remembered (see ModeMemory), so
// that a restart can still restore it.
type Footprints struct {
	path string

	saving sync.Mutex // one write at a time, the newest last
	mu     sync.Mutex
	byID   map[string]Footprint
	mode   ModeMemory
	dirty  bool
}

// ModeMemory is what a mode switch remembered: the mode now active, and
// the models that were loaded before the switch.
type ModeMemory struct {
	Active     string   `json:"active,omitempty"`
	Remembered []string `json:"remembered,omitempty"`
}

type footprintFile struct {
	Version int                  `json:"version"`
	Models  map[string]Footprint `json:"models"`
	Mode    *ModeMemory          `json:"mode,omitempty"`
}

// LoadFootprints reads path ("" keeps footprints in memory only). The
// error, if any, says why the file was ignored; the returned Footprints is
// usable either way.
func LoadFootprints(path string) (*Footprints, error) {
	f := &Footprints{path: path, byID: make(map[string]Footprint)}
	if path == "" {
		return f, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("footprints %s: %w", path, err)
	}
	var ff footprintFile
	if err := json.Unmarshal(b, &ff); err != nil {
		return f, fmt.Errorf("footprints %s is corrupt, ignoring it: %w", path, err)
	}
	if ff.Version != 1 {
		return f, fmt.Errorf("footprints %s has unknown version %d, ignoring it", path, ff.Version)
	}
	for id, fp := range ff.Models {
		if fp.RAM >= 0 && fp.VRAM >= 0 {
			f.byID[id] = fp
		}
	}
	if ff.Mode != nil {
		f.mode = *ff.Mode
	}
	return f, nil
}

// Mode is what the last mode switch remembered.
func (f *Footprints) Mode() ModeMemory {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ModeMemory{Active: f.mode.Active, Remembered: append([]string(nil), f.mode.Remembered...)}
}

// SetMode keeps m, and saves it at once.
func (f *Footprints) SetMode(m ModeMemory) error {
	f.mu.Lock()
	f.mode = m
	f.dirty = true
	f.mu.Unlock()
	return f.Save()
}

// Get returns model's learned footprint.
func (f *Footprints) Get(model string) Footprint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byID[model]
}

// Observe raises model's footprint to the measured ram and vram where
// they are larger, and reports whether it grew. Growth under 1% (or 1MiB)
// is ignored: RSS creeps by pages, and each change is logged and saved.
func (f *Footprints) Observe(model string, ram, vram int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	fp, known := f.byID[model]
	grew := func(now, was int64) bool { return now > was+max(was/100, 1<<20) }
	if known && !grew(ram, fp.RAM) && !grew(vram, fp.VRAM) {
		return false
	}
	fp.RAM = max(fp.RAM, ram)
	fp.VRAM = max(fp.VRAM, vram)
	fp.Updated = time.Now().UTC()
	f.byID[model] = fp
	f.dirty = true
	return true
}

// Save writes the footprints if they changed since the last Save.
func (f *Footprints) Save() error {
	f.saving.Lock()
	defer f.saving.Unlock()
	f.mu.Lock()
	if !f.dirty || f.path == "" {
		f.mu.Unlock()
		return nil
	}
	ff := footprintFile{Version: 1, Models: make(map[string]Footprint, len(f.byID))}
	for id, fp := range f.byID {
		ff.Models[id] = fp
	}
	if f.mode.Active != "" || len(f.mode.Remembered) > 0 {
		m := f.mode
		ff.Mode = &m
	}
	f.dirty = false
	f.mu.Unlock()

	b, err := json.MarshalIndent(ff, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
		return fmt.Errorf("footprints: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".footprints-*.tmp")
	if err != nil {
		return fmt.Errorf("footprints: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := firstErr(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("footprints: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("footprints: %w", err)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
