package soak

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxExamples bounds the violations kept, per kind, for the report.
const maxExamples = 8

// recorder collects invariant violations as the monitors find them: a
// count per kind and the first few, with when they happened.
type recorder struct {
	t     *testing.T
	start time.Time

	mu    sync.Mutex
	kinds map[string]*violations
	order []string
	done  bool // the test has ended: nothing more may be logged
}

type violations struct {
	n        int
	examples []string
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, start: time.Now(), kinds: map[string]*violations{}}
}

// since is the time into the soak, for messages.
func (r *recorder) since() time.Duration { return time.Since(r.start).Truncate(time.Millisecond) }

// violate records one violation of kind.
func (r *recorder) violate(kind, format string, a ...any) {
	detail := fmt.Sprintf("+%v %s", r.since(), fmt.Sprintf(format, a...))
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.kinds[kind]
	if v == nil {
		v = &violations{}
		r.kinds[kind] = v
		r.order = append(r.order, kind)
	}
	v.n++
	if len(v.examples) < maxExamples {
		v.examples = append(v.examples, detail)
		if !r.done {
			r.t.Logf("VIOLATION %s: %s", kind, detail)
		}
	}
}

// count is how many violations of kind were recorded ("": all).
func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.kinds {
		if kind == "" || k == kind {
			n += v.n
		}
	}
	return n
}

// summary is one line per kind, for the log.
func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range r.order {
		parts = append(parts, fmt.Sprintf("%s: %d", k, r.kinds[k].n))
	}
	return strings.Join(parts, ", ")
}

// fail reports each kind of violation as a test error, with its examples.
func (r *recorder) fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	for _, k := range r.order {
		v := r.kinds[k]
		r.t.Errorf("invariant violated: %s, %d time(s); the first:\n\t%s", k, v.n, strings.Join(v.examples, "\n\t"))
	}
}

// tally counts what the load got back, for the summary and for checking
// that every kind of chaos happened.
type tally struct {
	mu         sync.Mutex
	sent       int
	answered   int
	byAnswer   map[string]int // "200", "503 backend_start_failed", ...
	streamsOK  int            // ended with data: [DONE]
	streamsErr int            // ended with an error event
	hungUp     int            // the client hung up before the answer ended
	nonReaders int            // streams held unread, then closed
	slowReads  int            // streams read slowly to their end
	admin      map[string]int // "reload 200", "load 503 insufficient_memory", ...
	okAt       map[string]time.Time
	anyOK      time.Time // any model's last whole 200
}

func newTally() *tally {
	return &tally{byAnswer: map[string]int{}, admin: map[string]int{}, okAt: map[string]time.Time{}}
}

func (t *tally) add(f func(t *tally)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
}

// answer counts one answer: its status and, for errors, its code.
func (t *tally) answer(model string, status int, code string) {
	t.add(func(t *tally) {
		t.answered++
		key := fmt.Sprint(status)
		if code != "" {
			key += " " + code
		}
		t.byAnswer[key]++
		if status == 200 && code == "" {
			t.okAt[model] = time.Now()
			t.anyOK = t.okAt[model]
		}
	})
}

// adminOp counts one control-plane answer.
func (t *tally) adminOp(op string, status int, code string) {
	t.add(func(t *tally) {
		key := fmt.Sprintf("%s %d", op, status)
		if code != "" {
			key += " " + code
		}
		t.admin[key]++
	})
}

// adminOK is how many control-plane answers of op had a status < 400.
func (t *tally) adminOK(op string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, c := range t.admin {
		f := strings.Fields(k)
		if len(f) >= 2 && f[0] == op {
			if status, err := strconv.Atoi(f[1]); err == nil && status < 400 {
				n += c
			}
		}
	}
	return n
}

// lastOK is when model last answered a request 200 in full.
func (t *tally) lastOK(model string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.okAt[model]
}

func (t *tally) get(f func(t *tally) int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return f(t)
}

// counts renders a count map, largest first.
func counts(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
