package extproc_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/hotswap/hotswap/internal/extproc"
)

// picker is a fake endpoint picker: it names endpoints (from the request's
// x-pick header, so that a test chooses), upper-cases what it passes back
// of a response body, and says which response headers it saw.
type picker struct {
	extprocv3.UnimplementedExternalProcessorServer
	mu   sync.Mutex
	seen []string // ":path model" of each request
}

func (p *picker) Process(st extprocv3.ExternalProcessor_ProcessServer) error {
	var pick, path string
	var body []byte
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			for _, h := range v.RequestHeaders.GetHeaders().GetHeaders() {
				switch h.Key {
				case "x-pick":
					pick = string(h.RawValue)
				case ":path":
					path = string(h.RawValue)
				}
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			body = append(body, v.RequestBody.Body...)
			if !v.RequestBody.EndOfStream {
				continue
			}
			p.mu.Lock()
			p.seen = append(p.seen, path+" "+string(body))
			p.mu.Unlock()
			if pick == "none" {
				if err := st.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
					ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
						Body: []byte("no endpoint")}}}); err != nil {
					return err
				}
				continue
			}
			if err := st.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
				RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
					HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
						{Header: &corev3.HeaderValue{Key: extproc.DestinationHeader, RawValue: []byte(pick)}},
						{Header: &corev3.HeaderValue{Key: "x-picked", RawValue: []byte("yes")}},
					}}}}}}); err != nil {
				return err
			}
			if err := st.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
				RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
					Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
						Body: body, EndOfStream: true}}}}}}}); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if err := st.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
					HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
						{Header: &corev3.HeaderValue{Key: "x-picker-saw-status", RawValue: []byte(status(v.ResponseHeaders))}},
					}}}}}}); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			if err := st.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
				ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
					Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
						Body: []byte(strings.ToUpper(string(v.ResponseBody.Body))), EndOfStream: v.ResponseBody.EndOfStream}}}}}}}); err != nil {
				return err
			}
		}
	}
}

func status(h *extprocv3.HttpHeaders) string {
	for _, hv := range h.GetHeaders().GetHeaders() {
		if hv.Key == ":status" {
			return string(hv.RawValue)
		}
	}
	return ""
}

// listen serves h on 127.0.0.1 until the test ends.
func listen(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }() //nolint:errcheck
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// TestMain checks, after every test and its cleanups, that no goroutine
// was left behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGateway(t *testing.T) {
	// A backend that streams three lines, a moment apart, and says what
	// it was sent.
	backend := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Got", r.URL.Path+" "+string(b)+" picked="+r.Header.Get("X-Picked")+" auth="+r.Header.Get("Authorization"))
		for i := range 3 {
			fmt.Fprintf(w, "data: chunk %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond) // a backend writing as it generates, not a wait for a result
		}
	}))

	p := &picker{}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, p)
	go gs.Serve(gln) //nolint:errcheck
	defer gs.Stop()

	gw, err := extproc.Dial(gln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	front := "http://" + listen(t, gw)
	defer http.DefaultClient.CloseIdleConnections()

	send := func(pick, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", front+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("X-Pick", pick)
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// Picked, forwarded with the picker's headers and the client's, and
	// streamed back through the picker (which upper-cases it) as it comes.
	resp := send(backend, `{"model":"a"}`)
	if resp.StatusCode != 200 || resp.Header.Get(extproc.EndpointHeader) != backend ||
		resp.Header.Get("X-Picker-Saw-Status") != "200" || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("answer %d, headers %v", resp.StatusCode, resp.Header)
	}
	if got := resp.Header.Get("X-Got"); got != `/v1/chat/completions {"model":"a"} picked=yes auth=Bearer k` {
		t.Errorf("the backend was sent %q", got)
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	var first, last time.Time
	for sc.Scan() {
		if sc.Text() != "" {
			if first.IsZero() {
				first = time.Now()
			}
			last = time.Now()
			lines = append(lines, sc.Text())
		}
	}
	resp.Body.Close()
	if strings.Join(lines, "|") != "DATA: CHUNK 0|DATA: CHUNK 1|DATA: CHUNK 2" {
		t.Errorf("streamed back %q", lines)
	}
	if last.Sub(first) < 50*time.Millisecond {
		t.Errorf("the stream came at once (%v from first to last), not as written", last.Sub(first))
	}

	// A refused connection moves to the picker's fallback.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	resp = send(deadAddr+","+backend, `{"model":"b"}`)
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(extproc.EndpointHeader) != backend {
		t.Errorf("with the first endpoint refusing: %d from %q", resp.StatusCode, resp.Header.Get(extproc.EndpointHeader))
	}
	// No endpoint takes it: 503, counted.
	resp = send(deadAddr, `{"model":"c"}`)
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != 503 || gw.Unreachable.Load() != 1 {
		t.Errorf("with no endpoint reachable: %d, unreachable %d", resp.StatusCode, gw.Unreachable.Load())
	}
	// The picker's own answer.
	resp = send("none", `{"model":"d"}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(b) != "no endpoint" {
		t.Errorf("the picker's immediate answer: %d %q", resp.StatusCode, b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) != 4 || p.seen[0] != `/v1/chat/completions {"model":"a"}` {
		t.Errorf("the picker saw %q", p.seen)
	}
}
