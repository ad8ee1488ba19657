// Package state keeps what hotswap learns across restarts in one small
// JSON file (memory.state_file): each model's largest measured footprint,
// and what others ask it to keep (a mode switch's memory, which package
// control owns and stores here as a section of its own).
//
// A footprint belongs to the command that produced it: it is kept under
// the model's id and a fingerprint of its cmd and env (see Key), so that a
// model given another file, quantization or context learns afresh instead
// of being planned with the largest figure an old command ever took.
// Footprints an earlier hotswap kept by model name alone still count for
// their model (planning with less than a backend takes would risk running
// out of memory) until it is measured under its command; Forget drops
// them sooner.
//
// A missing file is an empty memory; a corrupt or unreadable one is
// reported and ignored, never fatal. Writes are atomic (a temporary file
// renamed over the old one), so a crash never leaves half a file.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/atomicfile"
)

// Footprint is the most memory a model's backend, run with one command,
// has been measured to use.
type Footprint struct {
	RAM     int64     `json:"ram"`
	VRAM    int64     `json:"vram"`
	Updated time.Time `json:"updated"`
}

// Key is what a footprint of m is kept under: its id and a fingerprint of
// what determines its memory, the command and the environment (as
// written: ${PORT} and ${MODEL} are the same at every start).
func Key(m *config.Model) string {
	h := sha256.New()
	for _, a := range m.Cmd {
		h.Write([]byte(a))
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
	env := slices.Clone(m.Env)
	slices.Sort(env)
	for _, e := range env {
		h.Write([]byte(e))
		h.Write([]byte{0})
	}
	return m.ID + "@" + hex.EncodeToString(h.Sum(nil)[:8])
}

// asleepSuffix marks the keys of footprints measured asleep.
const asleepSuffix = "/asleep"

// AsleepKey is what m's footprint while asleep (see config.Sleep) is kept
// under: its own, for the same command, apart from the footprint awake.
func AsleepKey(m *config.Model) string { return Key(m) + asleepSuffix }

// modelOf is the model id a key belongs to.
func modelOf(key string) string {
	id, _, _ := strings.Cut(key, "@")
	return id
}

// File is the state file, and what it holds, in memory.
type File struct {
	path string

	saving sync.Mutex // one write at a time, the newest last
	mu     sync.Mutex
	prints map[string]Footprint // by Key
	// sections are what others keep here, as they encoded it.
	sections map[string]json.RawMessage
	dirty    bool
}

// fileV2 is the file's shape. Version 1 kept footprints by model id
// alone, not knowing which command had produced them: they are carried
// over as such (see Footprint).
type fileV2 struct {
	Version    int                        `json:"version"`
	Footprints map[string]Footprint       `json:"footprints"`
	Sections   map[string]json.RawMessage `json:"sections,omitempty"`
}

type fileV1 struct {
	Models map[string]Footprint `json:"models"`
	Mode   json.RawMessage      `json:"mode,omitempty"`
}

// ModeSection is the section a mode switch's memory is kept in (the
// name version 1 files used for it too).
const ModeSection = "mode"

// Open reads path ("" keeps everything in memory only). The error, if
// any, says why the file (or part of it) was ignored; the File is usable
// either way, and the next save writes a good one.
func Open(path string) (*File, error) {
	f := &File{path: path, prints: map[string]Footprint{}, sections: map[string]json.RawMessage{}}
	if path == "" {
		return f, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("state %s: %w", path, err)
	}
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return f, fmt.Errorf("state %s is corrupt, ignoring it: %w", path, err)
	}
	switch v.Version {
	case 1:
		var old fileV1
		if err := json.Unmarshal(b, &old); err != nil {
			return f, fmt.Errorf("state %s is corrupt, ignoring it: %w", path, err)
		}
		for id, fp := range old.Models {
			if fp.RAM >= 0 && fp.VRAM >= 0 {
				f.prints[id] = fp // by name alone: see Footprint
			}
		}
		if len(old.Mode) > 0 {
			f.sections[ModeSection] = old.Mode
		}
		f.dirty = true
		return f, nil
	case 2:
		var cur fileV2
		if err := json.Unmarshal(b, &cur); err != nil {
			return f, fmt.Errorf("state %s is corrupt, ignoring it: %w", path, err)
		}
		for k, fp := range cur.Footprints {
			if fp.RAM >= 0 && fp.VRAM >= 0 {
				f.prints[k] = fp
			}
		}
		for name, raw := range cur.Sections {
			f.sections[name] = raw
		}
		return f, nil
	}
	return f, fmt.Errorf("state %s has unknown version %d, ignoring it", path, v.Version)
}

// Footprint is the footprint learned for key (see Key), or, until there
// is one, what an earlier hotswap learned for its model by name alone.
func (f *File) Footprint(key string) Footprint {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fp, ok := f.prints[key]; ok {
		return fp
	}
	if strings.HasSuffix(key, asleepSuffix) {
		return Footprint{} // a figure by name alone is one measured awake
	}
	return f.prints[modelOf(key)]
}

// Observe raises key's footprint to the measured ram and vram where they
// are larger, and reports whether it grew. Growth under 1% (or 1MiB) is
// ignored: RSS creeps by pages, and each change is logged and saved.
func (f *File) Observe(key string, ram, vram int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	fp, known := f.prints[key]
	grew := func(now, was int64) bool { return now > was+max(was/100, 1<<20) }
	if known && !grew(ram, fp.RAM) && !grew(vram, fp.VRAM) {
		return false
	}
	fp.RAM = max(fp.RAM, ram)
	fp.VRAM = max(fp.VRAM, vram)
	fp.Updated = time.Now().UTC()
	f.prints[key] = fp
	// Measured under its command now: a figure kept by name alone has
	// served its purpose (a figure asleep says nothing of it).
	if !strings.HasSuffix(key, asleepSuffix) {
		delete(f.prints, modelOf(key))
	}
	f.dirty = true
	return true
}

// Forget drops every footprint learned for model, whatever its command,
// and saves at once. It reports how many there were.
func (f *File) Forget(model string) (int, error) {
	f.mu.Lock()
	n := 0
	for k := range f.prints {
		if modelOf(k) == model {
			delete(f.prints, k)
			n++
		}
	}
	if n > 0 {
		f.dirty = true
	}
	f.mu.Unlock()
	return n, f.Save()
}

// Section decodes the section name into v; false if there is none.
func (f *File) Section(name string, v any) (bool, error) {
	f.mu.Lock()
	raw, ok := f.sections[name]
	f.mu.Unlock()
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

// SetSection keeps v as the section name (nil removes it), and saves at
// once.
func (f *File) SetSection(name string, v any) error {
	f.mu.Lock()
	if v == nil {
		delete(f.sections, name)
	} else {
		raw, err := json.Marshal(v)
		if err != nil {
			f.mu.Unlock()
			return err
		}
		f.sections[name] = raw
	}
	f.dirty = true
	f.mu.Unlock()
	return f.Save()
}

// Save writes the file if it changed since the last Save.
func (f *File) Save() error {
	f.saving.Lock()
	defer f.saving.Unlock()
	f.mu.Lock()
	if !f.dirty || f.path == "" {
		f.mu.Unlock()
		return nil
	}
	out := fileV2{Version: 2, Footprints: make(map[string]Footprint, len(f.prints)),
		Sections: make(map[string]json.RawMessage, len(f.sections))}
	for k, fp := range f.prints {
		out.Footprints[k] = fp
	}
	for name, raw := range f.sections {
		out.Sections[name] = raw
	}
	f.dirty = false
	f.mu.Unlock()

	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(f.path, append(b, '\n'))
}
