package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// outcome is what became of one request.
type outcome struct {
	status int    // the HTTP status; 0 when none came
	code   string // the OpenAI error code, or what went wrong on the wire; "" when answered
	// cancelled: the run was stopped (Ctrl-C) while it was in flight.
	// Such a request is neither answered nor an error.
	cancelled bool

	latency  time.Duration // from the request's due time to the answer's end
	ttft     time.Duration // to the first token of a stream; 0 when none came
	gaps     time.Duration // between a stream's tokens, summed
	nGaps    int
	tokens   int  // output tokens
	byUsage  bool // tokens is the backend's usage count, not chunks counted
	streamed bool
}

func (o *outcome) ok() bool { return o.code == "" && !o.cancelled }

// Codes for failures that are not the target's own answer.
const (
	codeRefused   = "connection_refused"
	codeTimeout   = "timeout"
	codeLost      = "connection_lost"
	codeTransport = "transport_error"
	codeBadAnswer = "bad_answer"
	codeStreamCut = "stream_cut"
	codeHTTP      = "http_error" // an error status without an OpenAI error body
)

// sender sends the workload's requests to one target.
type sender struct {
	target Target
	http   *http.Client
	key    string
	bodies [][]byte // per workload model, the request body
	paths  []string
	stream bool
}

func newSender(t Target, o *Options, models []model, conns int) *sender {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	c := &sender{target: t, http: &http.Client{Transport: tr}, key: o.APIKey, stream: o.Stream}
	for _, m := range models {
		name := o.name(t.Label, m.Model)
		var body any
		path := "/v1/chat/completions"
		switch m.kind {
		case kindEmbedding:
			path = "/v1/embeddings"
			body = map[string]any{"model": name, "input": o.Prompt}
		default:
			req := map[string]any{
				"model":      name,
				"messages":   []map[string]string{{"role": "user", "content": o.Prompt}},
				"max_tokens": o.MaxTokens,
			}
			if o.Stream {
				req["stream"] = true
				// Backends that know it send the exact token count at the
				// end; others leave the chunks to be counted.
				req["stream_options"] = map[string]bool{"include_usage": true}
			}
			body = req
		}
		b, _ := json.Marshal(body) // maps of strings and numbers: cannot fail
		c.bodies = append(c.bodies, b)
		c.paths = append(c.paths, path)
	}
	return c
}

func (c *sender) close() { c.http.CloseIdleConnections() }

// send sends the workload's model m and reads the answer to its end.
// due is when the request was meant to leave: latency counts from then,
// so that an open loop that fell behind does not hide the wait.
func (c *sender) send(ctx context.Context, m int, due time.Time, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.target.URL+c.paths[m], bytes.NewReader(c.bodies[m]))
	if err != nil {
		return outcome{code: codeTransport}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	var o outcome
	resp, err := c.http.Do(req)
	if err == nil {
		defer resp.Body.Close()
		o.status = resp.StatusCode
		switch {
		case resp.StatusCode/100 != 2:
			o.code = errorCode(resp.Body)
		case isEventStream(resp):
			o.streamed = true
			err = readStream(resp.Body, due, &o)
		default:
			err = readAnswer(resp.Body, &o)
		}
	}
	if err != nil {
		o.code = wireCode(ctx, err)
		o.cancelled = o.code == "" // the run was stopped
	}
	o.latency = time.Since(due)
	return o
}

func isEventStream(resp *http.Response) bool {
	ct := resp.Header.Get("Content-Type")
	return len(ct) >= 17 && ct[:17] == "text/event-stream"
}

// wireCode names a failure to get an answer: "" when the run itself was
// stopped, rather than the request failing.
func wireCode(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return codeTimeout
	case ctx.Err() != nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return codeRefused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		// net/http's word for a kept-alive connection the server closed
		// as the request went out (llama-server does after a stream).
		strings.Contains(err.Error(), "server closed idle connection"):
		return codeLost
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return codeTimeout
	case errors.Is(err, errStreamCut):
		return codeStreamCut
	case errors.Is(err, errBadAnswer):
		return codeBadAnswer
	}
	var se *streamError
	if errors.As(err, &se) {
		return se.code
	}
	return codeTransport
}

var (
	errStreamCut = errors.New("the stream ended before its last event")
	errBadAnswer = errors.New("the answer is not the JSON expected")
)

// streamError is an error event sent within a 200 stream.
type streamError struct{ code string }

func (e *streamError) Error() string { return "error event: " + e.code }

// apiError is OpenAI's error body; code may be a string or a number.
type apiError struct {
	Error *struct {
		Code any    `json:"code"`
		Type string `json:"type"`
	} `json:"error"`
}

func (e *apiError) name() string {
	if e.Error == nil {
		return ""
	}
	switch c := e.Error.Code.(type) {
	case string:
		if c != "" {
			return c
		}
	case float64:
		return http.StatusText(int(c))
	}
	return e.Error.Type
}

// errorCode is the code of an error answer's body.
func errorCode(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	var e apiError
	if json.Unmarshal(b, &e) == nil {
		if name := e.name(); name != "" {
			return name
		}
	}
	return codeHTTP
}

// answer is the part of a completion, chunk or embeddings answer the
// figures need.
type answer struct {
	apiError
	Choices []struct {
		Text  *string `json:"text"`
		Delta *struct {
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

func readAnswer(body io.Reader, o *outcome) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	var a answer
	if json.Unmarshal(b, &a) != nil {
		return errBadAnswer
	}
	if a.Usage != nil {
		o.tokens, o.byUsage = a.Usage.CompletionTokens, true
	}
	return nil
}

// readStream reads server-sent events to the end, timing the tokens.
func readStream(body io.Reader, due time.Time, o *outcome) error {
	r := bufio.NewReaderSize(body, 16<<10)
	var last time.Time
	chunks, finished := 0, false
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: read the rest of it.
			rest, err2 := r.ReadBytes('\n')
			line, err = append(append([]byte(nil), line...), rest...), err2
		}
		if err != nil {
			if errors.Is(err, io.EOF) && finished {
				break // no [DONE], but the last choice said it was the end
			}
			if errors.Is(err, io.EOF) {
				return errStreamCut
			}
			return err
		}
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
		if !ok {
			continue // event names, comments, blank lines
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			break
		}
		var a answer
		if json.Unmarshal(data, &a) != nil {
			return errBadAnswer
		}
		if a.Error != nil {
			return &streamError{code: a.name()}
		}
		if a.Usage != nil {
			o.tokens, o.byUsage = a.Usage.CompletionTokens, true
		}
		for _, c := range a.Choices {
			if c.FinishReason != nil && *c.FinishReason != "" {
				finished = true
			}
			if (c.Delta == nil || c.Delta.Content == nil || *c.Delta.Content == "") && (c.Text == nil || *c.Text == "") {
				continue
			}
			now := time.Now()
			if chunks == 0 {
				o.ttft = now.Sub(due)
			} else {
				o.gaps += now.Sub(last)
				o.nGaps++
			}
			last = now
			chunks++
		}
	}
	if !o.byUsage {
		o.tokens = chunks
	}
	return nil
}
