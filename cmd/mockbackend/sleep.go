package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// vLLM's sleep mode (-sleep-mode), as `vllm serve --enable-sleep-mode`
// with VLLM_SERVER_DEV_MODE=1 serves it (vllm/entrypoints/serve/sleep/
// api_router.py):
//
//	POST /sleep?level=1|2  200, empty body, once asleep (level defaults to 1)
//	POST /wake_up[?tags=…] 200, empty body, once awake (tags are ignored here)
//	GET  /is_sleeping      {"is_sleeping": bool}, true while waking too
//
// Without -sleep-mode the three paths are unknown (404), as without
// VLLM_SERVER_DEV_MODE. Sleeping, at either level, gives the -hold memory
// back to the system (a level 1 vLLM keeps its weights in CPU memory, but
// it is GPU memory hotswap frees, and the mock's -hold stands for that);
// waking takes it again and touches every page, taking at least
// -wake-time. /health still answers 200 while asleep, as vLLM's does, and
// so do GET /v1/models and /mock/stats. A model POST that arrives while
// asleep or waking is parked until the mock is awake, as vLLM v1 parks it
// in its scheduler's waiting queue; /mock/stats counts them as parked.

// sleeper is the sleep-mode state of a mock.
type sleeper struct {
	// change serializes sleeping and waking: a /sleep during a wake waits
	// for the wake to end, and the other way round.
	change sync.Mutex

	mu     sync.Mutex
	asleep bool          // asleep or waking
	awake  chan struct{} // closed when awake; parked requests wait on it
	level  int           // the level of the last sleep
	sleeps int
	wakes  int
	parked int
	left   int // parked requests whose client gave up
	// When the last sleep ended and the last wake began and ended, in Unix
	// nanoseconds: tests check their order and spacing.
	sleptAt, wakeStartedAt, wokeAt int64
}

// sleepStats is what /mock/stats says of sleep mode.
type sleepStats struct {
	Sleeping bool `json:"sleeping"`
	// SleepLevel is the level of the last sleep (0: never slept).
	SleepLevel int `json:"sleep_level"`
	Sleeps     int `json:"sleeps"`
	Wakes      int `json:"wakes"`
	// Parked counts the model POSTs that arrived while asleep or waking
	// and waited for the wake.
	Parked int `json:"parked"`
	// ParkedLeft counts those whose client gave up before the wake.
	ParkedLeft    int   `json:"parked_left"`
	SleptAt       int64 `json:"slept_at"`
	WakeStartedAt int64 `json:"wake_started_at"`
	WokeAt        int64 `json:"woke_at"`
}

func (m *mock) sleepStats() sleepStats {
	s := &m.sleeper
	s.mu.Lock()
	defer s.mu.Unlock()
	return sleepStats{Sleeping: s.asleep, SleepLevel: s.level, Sleeps: s.sleeps, Wakes: s.wakes,
		Parked: s.parked, ParkedLeft: s.left, SleptAt: s.sleptAt, WakeStartedAt: s.wakeStartedAt, WokeAt: s.wokeAt}
}

// sleepRoutes adds vLLM's sleep endpoints to routes when -sleep-mode is on.
func (m *mock) sleepRoutes() {
	if !m.opts.sleepMode {
		return
	}
	m.routes["/sleep"] = route{method: http.MethodPost, serve: func(w http.ResponseWriter, r *http.Request, _ *call) { m.sleep(w, r) }}
	m.routes["/wake_up"] = route{method: http.MethodPost, serve: func(w http.ResponseWriter, r *http.Request, _ *call) { m.wakeUp(w, r) }}
	m.routes["/is_sleeping"] = route{method: http.MethodGet, serve: func(w http.ResponseWriter, r *http.Request, _ *call) {
		writeJSON(w, http.StatusOK, map[string]bool{"is_sleeping": m.sleepStats().Sleeping})
	}}
}

// sleep is POST /sleep?level=N.
func (m *mock) sleep(w http.ResponseWriter, r *http.Request) {
	if !m.ready.Load() {
		// vLLM serves nothing before its engine is up; the mock says loading.
		writeError(w, http.StatusServiceUnavailable, "unavailable", "loading", "model is loading")
		return
	}
	level := 1
	switch q := r.URL.Query().Get("level"); q {
	case "", "1":
	case "2":
		level = 2
	default:
		badRequest(w, "invalid_level", fmt.Sprintf("level %q: the mock knows levels 1 and 2", q))
		return
	}
	if m.opts.failSleep {
		writeError(w, http.StatusInternalServerError, "server_error", "sleep_failed", "sleep failed on purpose (-fail-sleep)")
		return
	}
	s := &m.sleeper
	s.change.Lock()
	defer s.change.Unlock()
	s.mu.Lock()
	if s.asleep {
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK) // already asleep: nothing to do, as vLLM
		return
	}
	s.asleep = true
	s.awake = make(chan struct{})
	s.mu.Unlock()

	m.release()

	s.mu.Lock()
	s.level = level
	s.sleeps++
	s.sleptAt = time.Now().UnixNano()
	s.mu.Unlock()
	if !m.opts.quiet {
		fmt.Fprintf(m.stdout, "model %s sleeping (level %d)\n", m.opts.model, level)
	}
	w.WriteHeader(http.StatusOK)
}

// wakeUp is POST /wake_up: it takes the -hold memory again, over at least
// -wake-time, and answers once awake.
func (m *mock) wakeUp(w http.ResponseWriter, r *http.Request) {
	if !m.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "loading", "model is loading")
		return
	}
	if m.opts.failWake {
		writeError(w, http.StatusInternalServerError, "server_error", "wake_failed", "wake failed on purpose (-fail-wake)")
		return
	}
	s := &m.sleeper
	s.change.Lock()
	defer s.change.Unlock()
	s.mu.Lock()
	if !s.asleep {
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK) // already awake
		return
	}
	start := time.Now()
	s.wakeStartedAt = start.UnixNano()
	s.mu.Unlock()

	// The wake goes on even if the client leaves, as vLLM's does.
	m.retake()
	sleep(context.Background(), time.Until(start.Add(m.opts.wakeTime)))

	s.mu.Lock()
	s.asleep = false
	s.wakes++
	s.wokeAt = time.Now().UnixNano()
	close(s.awake)
	s.mu.Unlock()
	if !m.opts.quiet {
		fmt.Fprintf(m.stdout, "model %s awake\n", m.opts.model)
	}
	w.WriteHeader(http.StatusOK)
}

// waitAwake parks a model POST while the mock is asleep or waking. It
// reports false if the client left first (or its body could not be read).
func (m *mock) waitAwake(w http.ResponseWriter, r *http.Request) bool {
	s := &m.sleeper
	s.mu.Lock()
	if !s.asleep {
		s.mu.Unlock()
		return true
	}
	s.parked++
	awake := s.awake
	s.mu.Unlock()
	// Read the body first: only then does the server watch the connection
	// and end the request's context when the client leaves.
	if _, err := readBody(w, r); err != nil {
		badRequest(w, "invalid_body", "reading the body: "+err.Error())
		return false
	}
	select {
	case <-awake:
		return true
	case <-r.Context().Done():
		s.mu.Lock()
		s.left++
		s.mu.Unlock()
		return false
	}
}

// release gives the -hold memory back to the system: unmapped if it was
// mapped (see ballast), else dropped and the heap returned.
func (m *mock) release() {
	b := m.ballast
	m.ballast = nil
	if len(b) == 0 {
		return
	}
	if syscall.Munmap(b) != nil {
		// Not from mmap (Go's heap): with the last reference gone, a
		// collection frees it and FreeOSMemory returns it.
		debug.FreeOSMemory()
	}
}

// retake allocates the -hold memory again and touches every page.
func (m *mock) retake() {
	if m.opts.hold <= 0 {
		return
	}
	b := ballast(m.opts.hold)
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1
	}
	m.ballast = b
}
