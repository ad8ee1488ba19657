package swapper

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/gguf"
	"github.com/hotswap/hotswap/state"
)

// estimates are footprints estimated from GGUF model files, for models
// that declare no memory: computed outside the swapper's lock (New,
// Reconfigure) and read under it. Only successes are kept, by argv, so
// that a file missing now is tried again at the next reconfiguration.
type estimates struct {
	mu    sync.Mutex
	byCmd map[string]config.Need
}

func cmdKey(m *config.Model) string { return strings.Join(m.Cmd, "\x00") }

// get is m's estimate, if there is one.
func (e *estimates) get(m *config.Model) (config.Need, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.byCmd[cmdKey(m)]
	return n, ok
}

// estimateAll estimates the footprint of each model in models that
// declares no memory and has none learned, from its GGUF file, unless it
// is known already. It reads files: never call it with s.mu held.
func (s *Swapper) estimateAll(models map[string]*config.Model) {
	for _, m := range models {
		if m.Memory.RAM != 0 || m.Memory.VRAM != 0 {
			continue
		}
		if _, ok := s.est.get(m); ok {
			continue
		}
		if fp := s.opts.Footprints.Footprint(state.Key(m)); fp.RAM != 0 || fp.VRAM != 0 {
			continue
		}
		paths, p, ok := modelFiles(m)
		if !ok {
			continue
		}
		e, err := gguf.EstimateFiles(paths, p)
		if err != nil {
			s.log.Warn("no footprint estimate from the model file", zap.String("model", m.ID), zap.Error(err))
			continue
		}
		need := config.Need{RAM: e.RAM, VRAM: e.VRAM}
		s.log.Info("estimated footprint from the model file", zap.String("model", m.ID),
			zap.String("file", paths[0]), zap.Int("files", len(paths)),
			zap.Int64("weights", e.Weights), zap.Int64("kv_cache", e.KV), zap.Int64("ctx", e.Ctx),
			zap.Int64("compute", e.Compute), zap.Int64("ram", need.RAM), zap.Int64("vram", need.VRAM))
		s.est.mu.Lock()
		if s.est.byCmd == nil {
			s.est.byCmd = map[string]config.Need{}
		}
		s.est.byCmd[cmdKey(m)] = need
		s.est.mu.Unlock()
	}
}

var splitRE = regexp.MustCompile(`^(.*)-(\d{5})-of-(\d{5})\.gguf$`)

// modelFiles finds m's GGUF file in its argv (the value of -m/--model,
// or else an argument ending in .gguf) with all its parts if it is split
// (-00001-of-0000N.gguf), and the llama-server settings that matter.
func modelFiles(m *config.Model) ([]string, gguf.Params, bool) {
	argv, _, _ := m.Expand(0)
	p := gguf.DefaultParams
	var file string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "-") || !hasVal {
			name = a
			val = ""
			if i+1 < len(argv) {
				val = argv[i+1]
			}
		}
		n, numErr := strconv.ParseInt(val, 10, 64)
		switch name {
		case "-m", "--model":
			file = val
		case "-c", "--ctx-size":
			if numErr == nil {
				p.Ctx = n
			}
		case "-np", "--parallel":
			if numErr == nil {
				p.Parallel = n
			}
		case "-b", "--batch-size":
			if numErr == nil {
				p.Batch = n
			}
		case "-ub", "--ubatch-size":
			if numErr == nil {
				p.Ubatch = n
			}
		case "-kvu", "--kv-unified":
			p.KVUnified = true
		case "-ctk", "--cache-type-k":
			if t, ok := gguf.CacheType(val); ok {
				p.CacheK = t
			}
		case "-ctv", "--cache-type-v":
			if t, ok := gguf.CacheType(val); ok {
				p.CacheV = t
			}
		case "-mm", "--mmproj", "-md", "--model-draft", "--lora", "--control-vector":
			if !hasVal || !strings.HasPrefix(a, "-") {
				i++ // another model's file, not this one's
			}
		case "-ngl", "--gpu-layers", "--n-gpu-layers":
			if numErr == nil {
				p.GPULayers = n
			}
		default:
			if file == "" && strings.HasSuffix(strings.ToLower(a), ".gguf") && !strings.HasPrefix(a, "-") {
				file = a
			}
		}
	}
	if file == "" {
		return nil, p, false
	}
	sm := splitRE.FindStringSubmatch(file)
	if sm == nil {
		return []string{file}, p, true
	}
	total, _ := strconv.Atoi(sm[3])
	if total < 1 || total > 9999 {
		return []string{file}, p, true
	}
	paths := make([]string, total)
	for i := range paths {
		paths[i] = fmt.Sprintf("%s-%05d-of-%s.gguf", sm[1], i+1, sm[3])
	}
	return paths, p, true
}
