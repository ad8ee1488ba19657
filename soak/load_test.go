package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The load: clients that send requests and check every answer, and an
// operator that works the control plane meanwhile.

// answerDeadline is how long a client waits for its answer, whole.
// hotswap's own bound is queue_timeout (20 s) plus the answer: no answer
// within this is a violation.
const answerDeadline = 45 * time.Second

var (
	errHangUp   = errors.New("the client hung up")
	errNoAnswer = errors.New("no answer within the client's deadline")
)

// load sends requests to hotswap and checks that each gets exactly one
// well-formed answer.
type load struct {
	deadline time.Duration // answerDeadline, but for SOAK_BREAK=deadline
	url      string
	c        *http.Client
	rec      *recorder
	tally    *tally
	ids      []string
	cum      []float64 // cumulative weights of ids
}

func newLoad(url string, c *http.Client, rec *recorder, tally *tally) *load {
	l := &load{deadline: answerDeadline, url: url, c: c, rec: rec, tally: tally}
	var sum float64
	for _, m := range models(0) {
		sum += m.weight
		l.ids = append(l.ids, m.id)
		l.cum = append(l.cum, sum)
	}
	return l
}

// pick draws a model by the weights.
func (l *load) pick(rng *rand.Rand) string {
	x := rng.Float64() * l.cum[len(l.cum)-1]
	for i, c := range l.cum {
		if x < c {
			return l.ids[i]
		}
	}
	return l.ids[len(l.ids)-1]
}

// client sends requests until ctx ends: streamed or not, to models drawn
// at random; one in ten hangs up after a random short delay, one stream in
// five is read slowly.
func (l *load) client(ctx context.Context, rng *rand.Rand) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		model, stream := l.pick(rng), rng.IntN(2) == 0
		var hangAfter time.Duration
		slow := false
		switch x := rng.IntN(10); {
		case x == 0:
			hangAfter = time.Duration(20+rng.IntN(1500)) * time.Millisecond
		case x <= 2 && stream:
			slow = true
		}
		l.do(model, stream, hangAfter, slow, rng)
		pause.Reset(time.Duration(50+rng.IntN(250)) * time.Millisecond)
	}
}

func chatBody(model string, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"soak"}],"stream":%v}`, model, stream)
}

// do sends one chat completion and checks its answer. With hangAfter,
// the client hangs up that long after sending; with slow, it reads the
// stream slowly.
func (l *load) do(model string, stream bool, hangAfter time.Duration, slow bool, rng *rand.Rand) {
	l.tally.add(func(t *tally) { t.sent++ })
	ctx, cancel := context.WithTimeoutCause(context.Background(), l.deadline, errNoAnswer)
	defer cancel()
	if hangAfter > 0 {
		var hangUp context.CancelCauseFunc
		ctx, hangUp = context.WithCancelCause(ctx)
		defer hangUp(nil)
		t := time.AfterFunc(hangAfter, func() { hangUp(errHangUp) })
		defer t.Stop()
	}
	what := fmt.Sprintf("%s (stream %v)", model, stream)
	resp, begin, ok := l.post(ctx, what, model, stream)
	if !ok {
		return
	}
	defer resp.Body.Close()
	if stream && resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		l.readStream(ctx, what, model, begin, resp.Body, slow, rng)
		return
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		l.broken(ctx, what, begin, "answer cut short", fmt.Errorf("status %d, %d bytes read: %w", resp.StatusCode, len(body), err))
		return
	}
	l.check(what, model, resp.StatusCode, body)
}

// broken sorts out a request that ended without a whole answer: the
// client hung up (fine), the client's deadline passed (no answer: a
// violation), or the connection failed under it (a violation of kind).
func (l *load) broken(ctx context.Context, what string, begin time.Time, kind string, err error) {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errHangUp):
		l.tally.add(func(t *tally) { t.hungUp++ })
	case errors.Is(cause, errNoAnswer):
		l.rec.violate("request got no answer", "%s: nothing within %v", what, l.deadline)
	default:
		l.rec.violate(kind, "%s, after %v: %v", what, time.Since(begin).Truncate(time.Millisecond), err)
	}
}

// check checks a whole answer: OpenAI's error shape for an error status,
// a completion for 200.
func (l *load) check(what, model string, status int, body []byte) {
	switch {
	case status >= 400:
		code, err := openAIError(body)
		if err != nil {
			l.rec.violate("malformed error answer", "%s: status %d, %v: %q", what, status, err, cut(body))
			return
		}
		l.tally.answer(model, status, code)
	case status == 200:
		var c struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
			l.rec.violate("malformed answer", "%s: status 200 without a completion: %q", what, cut(body))
			return
		}
		l.tally.answer(model, status, "")
	default:
		l.rec.violate("malformed answer", "%s: status %d: %q", what, status, cut(body))
	}
}

// readStream reads a 200 event stream to its end, which must be
// `data: [DONE]` or an error event.
func (l *load) readStream(ctx context.Context, what, model string, begin time.Time, body io.Reader, slow bool, rng *rand.Rand) {
	r := bufio.NewReaderSize(body, 1024)
	var done, errored bool
	var last []string
	for {
		line, err := r.ReadString('\n')
		if s := strings.TrimSpace(line); s != "" {
			if last = append(last, s); len(last) > 4 {
				last = last[1:]
			}
			switch {
			case s == "data: [DONE]":
				done = true
			case strings.HasPrefix(s, "data: ") && strings.Contains(s, `"error"`):
				var e struct {
					Error json.RawMessage `json:"error"`
				}
				if json.Unmarshal([]byte(s[len("data: "):]), &e) != nil || len(e.Error) == 0 {
					break // a chunk that mentions "error" in its text
				}
				code, err := openAIError([]byte(s[len("data: "):]))
				if err != nil {
					l.rec.violate("malformed error event", "%s: %v: %q", what, err, cut([]byte(s)))
				}
				errored = true
				l.tally.answer(model, 200, "event "+code)
			}
		}
		if err != nil {
			switch {
			case done:
				l.tally.answer(model, 200, "")
				l.tally.add(func(t *tally) {
					t.streamsOK++
					if slow {
						t.slowReads++
					}
				})
			case errored:
				l.tally.add(func(t *tally) { t.streamsErr++ })
			case err == io.EOF:
				l.rec.violate("stream ended without [DONE] or an error event", "%s, after %v; its last lines: %q",
					what, time.Since(begin).Truncate(time.Millisecond), last)
			default:
				l.broken(ctx, what, begin, "stream cut", fmt.Errorf("%w; its last lines: %q", err, last))
			}
			return
		}
		if slow { // a slow reader: pacing, not waiting for anything
			time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
		}
	}
}

// nonReader opens streams it never reads: it holds each a few seconds,
// then closes it.
func (l *load) nonReader(ctx context.Context, rng *rand.Rand) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		l.holdUnread([]string{"slow", "closer"}[rng.IntN(2)], time.Duration(2000+rng.IntN(2000))*time.Millisecond)
		pause.Reset(time.Duration(100+rng.IntN(400)) * time.Millisecond)
	}
}

// post sends a chat completion for model; a failure to get any answer is
// recorded (ok false).
func (l *load) post(ctx context.Context, what, model string, stream bool) (resp *http.Response, begin time.Time, ok bool) {
	req, err := http.NewRequestWithContext(ctx, "POST", l.url+"/v1/chat/completions", strings.NewReader(chatBody(model, stream)))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	begin = time.Now()
	if resp, err = l.c.Do(req); err != nil {
		l.broken(ctx, what, begin, "request got no answer", err)
		return nil, begin, false
	}
	return resp, begin, true
}

func (l *load) holdUnread(model string, hold time.Duration) {
	l.tally.add(func(t *tally) { t.sent++ })
	ctx, cancel := context.WithTimeoutCause(context.Background(), l.deadline, errNoAnswer)
	defer cancel()
	what := fmt.Sprintf("%s (stream, never read)", model)
	resp, begin, ok := l.post(ctx, what, model, true)
	if !ok {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			l.broken(ctx, what, begin, "answer cut short", err)
			return
		}
		l.check(what, model, resp.StatusCode, body)
		return
	}
	l.tally.add(func(t *tally) { t.nonReaders++ })
	t := time.NewTimer(hold)
	defer t.Stop()
	<-t.C
}

// operator works the control plane: loads, unloads, mode switches and
// restores, and reloads of a configuration file it changes each time.
type operator struct {
	l    *load
	path string // the configuration file
	mock string
	rng  *rand.Rand
	sab  sabotage

	mu  sync.Mutex
	gen int // the configuration's generation
}

// ops is the operator's round, one every two seconds.
var ops = []string{"load", "reload", "mode chat", "unload", "restore", "load brief", "mode heavy", "load",
	"reload", "restore", "mode broken", "unload", "restore", "load brief"}

func (o *operator) run(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o.do(ops[i%len(ops)])
	}
}

// do carries out one command and checks its answer: any status, but a
// well-formed one (JSON; OpenAI's error shape for an error), and in time.
// It returns the status and the error code.
func (o *operator) do(op string) (int, string) {
	kind, arg, _ := strings.Cut(op, " ")
	var path string
	switch kind {
	case "load", "unload":
		if arg == "" {
			arg = o.l.pick(o.rng)
		}
		path = "/admin/models/" + arg + "/" + kind
	case "mode":
		path = "/admin/modes/" + arg
	case "restore":
		path = "/admin/modes/restore"
	case "unload-all":
		path = "/admin/unload"
	case "reload":
		o.mu.Lock()
		o.gen++
		err := writeConfig(o.path, o.mock, o.gen, o.sab)
		o.mu.Unlock()
		if err != nil {
			panic(err)
		}
		path = "/admin/reload"
	default:
		panic("unknown op " + op)
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), o.l.deadline, errNoAnswer)
	defer cancel()
	begin := time.Now()
	status, body, err := call(ctx, o.l.c, "POST", o.l.url+path, "")
	what := "POST " + path
	if err != nil {
		if errors.Is(context.Cause(ctx), errNoAnswer) {
			o.l.rec.violate("admin command got no answer", "%s: nothing within %v", what, o.l.deadline)
		} else {
			o.l.rec.violate("admin command got no answer", "%s, after %v: %v", what, time.Since(begin).Truncate(time.Millisecond), err)
		}
		return 0, ""
	}
	var code string
	if status >= 400 {
		if code, err = openAIError(body); err != nil {
			o.l.rec.violate("malformed admin answer", "%s: status %d, %v: %q", what, status, err, cut(body))
		}
	} else if !json.Valid(body) {
		o.l.rec.violate("malformed admin answer", "%s: status %d, not JSON: %q", what, status, cut(body))
	}
	o.l.tally.adminOp(kind, status, code)
	return status, code
}

// cut is a body short enough for a message.
func cut(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
