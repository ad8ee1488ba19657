package ollama

import "time"

// Answer turns one backend answer into Ollama's.
type Answer struct {
	r     *Request
	start time.Time
	now   func() time.Time
	load  time.Duration
	done  bool
}

// NewAnswer starts the answer to r.
func NewAnswer(r *Request, start time.Time, now func() time.Time) *Answer {
	return &Answer{r: r, start: start, now: now}
}

// SetLoadDuration records how long the request waited for its model to load.
func (a *Answer) SetLoadDuration(d time.Duration) { a.load = d }

// Whole translates a backend's whole (non-streamed) JSON answer.
func (a *Answer) Whole(status int, body []byte) []byte { return ErrorBody("not implemented") }

// Feed translates a streamed backend answer into NDJSON lines appended to dst.
func (a *Answer) Feed(dst, src []byte) []byte { return dst }

// End is called once the backend's stream has ended.
func (a *Answer) End(dst []byte, err error) []byte { return dst }

// Done reports whether the final line has been written.
func (a *Answer) Done() bool { return a.done }

// LoadAnswer is the answer to an Empty request.
func LoadAnswer(ep Endpoint, model, reason string, now time.Time) []byte { return nil }

// ProgressLine is one streamed line carrying text as thinking.
func ProgressLine(ep Endpoint, model, text string, now time.Time) []byte { return nil }
