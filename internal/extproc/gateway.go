// Package extproc is a small stand-in for Envoy's part in front of an
// endpoint picker (llm-d's EPP), for tests and benchmarks on a machine
// without Envoy: for each HTTP request it asks the picker over ext_proc
// gRPC which endpoint to use, as Envoy's ext_proc filter does in
// FULL_DUPLEX_STREAMED mode (request headers, then the body), forwards
// the request to the endpoint the picker names in
// x-gateway-destination-endpoint (an ORIGINAL_DST cluster's part), and
// passes the answer back through the picker, headers then body chunks as
// they come, writing what the picker returns.
//
// It is not a gateway to deploy: no TLS, no retries but to a fallback
// endpoint the picker names, no limits beyond a body size.
package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DestinationHeader is where the picker names the endpoint (ip:port, or a
// comma-separated list: the first, then fallbacks).
const DestinationHeader = "x-gateway-destination-endpoint"

// EndpointHeader is set on every answer the gateway forwarded: the
// endpoint that answered, so that tests and benchmarks see where a
// request went.
const EndpointHeader = "X-Gateway-Endpoint"

// maxBody bounds a request body, which the picker reads whole.
const maxBody = 16 << 20

// Gateway forwards HTTP requests to the endpoints a picker chooses.
type Gateway struct {
	conn   *grpc.ClientConn
	picker extprocv3.ExternalProcessorClient
	hc     *http.Client
	// Unreachable counts requests whose chosen endpoints all refused the
	// connection (answered 503).
	Unreachable atomic.Int64
}

// Dial returns a Gateway that asks the picker at addr (host:port of its
// ext_proc gRPC service, without TLS).
func Dial(addr string) (*Gateway, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("ext_proc client for %s: %w", addr, err)
	}
	return &Gateway{
		conn:   conn,
		picker: extprocv3.NewExternalProcessorClient(conn),
		hc: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}},
	}, nil
}

// Close closes the connection to the picker and idle ones to endpoints.
func (g *Gateway) Close() error {
	g.hc.CloseIdleConnections()
	return g.conn.Close()
}

// ServeHTTP asks the picker, forwards, and passes the answer back.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, "reading the request body: "+err.Error())
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st, err := g.picker.Process(ctx)
	if err != nil {
		fail(w, http.StatusBadGateway, "endpoint picker: "+err.Error())
		return
	}
	defer st.CloseSend() //nolint:errcheck // the stream ends with ctx

	pick, err := request(st, r, body)
	if err != nil {
		fail(w, http.StatusBadGateway, "endpoint picker: "+err.Error())
		return
	}
	if pick.immediate != nil {
		immediate(w, pick.immediate)
		return
	}
	resp, endpoint, err := g.forward(ctx, r, pick)
	if err != nil {
		g.Unreachable.Add(1)
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer resp.Body.Close()
	begun, err := respond(st, cancel, w, resp, endpoint)
	switch {
	case err == nil || r.Context().Err() != nil:
	case !begun:
		fail(w, http.StatusBadGateway, "endpoint picker, on the answer: "+err.Error())
	default:
		// The answer has begun: all that is left is to cut it.
		panic(http.ErrAbortHandler)
	}
}

// picked is the picker's answer to a request.
type picked struct {
	endpoints []string
	headers   []*corev3.HeaderValueOption
	body      []byte
	immediate *extprocv3.ImmediateResponse
}

// request sends the request's headers and body to the picker and reads
// its answers to them: header mutations naming the endpoint, and the body
// (which the picker may rewrite), or an immediate answer.
func request(st extprocv3.ExternalProcessor_ProcessClient, r *http.Request, body []byte) (picked, error) {
	hs := []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte(r.Method)},
		{Key: ":path", RawValue: []byte(r.URL.RequestURI())},
		{Key: ":authority", RawValue: []byte(r.Host)},
		{Key: ":scheme", RawValue: []byte("http")},
		{Key: "content-length", RawValue: []byte(strconv.Itoa(len(body)))},
	}
	for k, vs := range r.Header {
		if strings.EqualFold(k, "content-length") {
			continue
		}
		for _, v := range vs {
			hs = append(hs, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
		}
	}
	if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: len(body) == 0},
	}}); err != nil {
		return picked{}, err
	}
	if len(body) > 0 {
		if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true},
		}}); err != nil {
			return picked{}, err
		}
	}
	var p picked
	gotHeaders, bodyDone := false, len(body) == 0
	var rewritten []byte
	mutated := false
	for !gotHeaders || !bodyDone {
		resp, err := st.Recv()
		if err != nil {
			return picked{}, err
		}
		switch v := resp.Response.(type) {
		case *extprocv3.ProcessingResponse_ImmediateResponse:
			return picked{immediate: v.ImmediateResponse}, nil
		case *extprocv3.ProcessingResponse_RequestHeaders:
			p.headers = append(p.headers, v.RequestHeaders.GetResponse().GetHeaderMutation().GetSetHeaders()...)
			gotHeaders = true
		case *extprocv3.ProcessingResponse_RequestBody:
			bm := v.RequestBody.GetResponse().GetBodyMutation()
			switch {
			case bm.GetStreamedResponse() != nil:
				mutated = true
				rewritten = append(rewritten, bm.GetStreamedResponse().GetBody()...)
				bodyDone = bm.GetStreamedResponse().GetEndOfStream()
			case bm.GetBody() != nil:
				mutated, rewritten, bodyDone = true, bm.GetBody(), true
			default:
				bodyDone = true
			}
		default:
			return picked{}, fmt.Errorf("unexpected answer %T to a request", v)
		}
	}
	p.body = body
	if mutated {
		p.body = rewritten
	}
	for _, h := range p.headers {
		if strings.EqualFold(h.GetHeader().GetKey(), DestinationHeader) {
			for _, ep := range strings.Split(headerValue(h.GetHeader()), ",") {
				if ep = strings.TrimSpace(ep); ep != "" {
					p.endpoints = append(p.endpoints, ep)
				}
			}
		}
	}
	if len(p.endpoints) == 0 {
		return picked{}, errors.New("no " + DestinationHeader + " in the picker's answer")
	}
	return p, nil
}

// forward sends the request to the first endpoint that takes the
// connection: the picker's choice, then its fallbacks. Only a refused
// connection moves on, since nothing of the request was sent.
func (g *Gateway) forward(ctx context.Context, r *http.Request, p picked) (*http.Response, string, error) {
	var errs []error
	for _, ep := range p.endpoints {
		out, err := http.NewRequestWithContext(ctx, r.Method, "http://"+ep+r.URL.RequestURI(), strings.NewReader(string(p.body)))
		if err != nil {
			return nil, "", err
		}
		for k, vs := range r.Header {
			if !hopByHop(k) {
				out.Header[k] = vs
			}
		}
		for _, h := range p.headers {
			k := h.GetHeader().GetKey()
			if strings.HasPrefix(k, ":") || strings.EqualFold(k, "content-length") || hopByHop(k) {
				continue
			}
			out.Header.Set(k, headerValue(h.GetHeader()))
		}
		out.ContentLength = int64(len(p.body))
		resp, err := g.hc.Do(out)
		if err == nil {
			return resp, ep, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			break
		}
	}
	return nil, "", fmt.Errorf("no endpoint the picker chose took the request: %w", errors.Join(errs...))
}

// respond passes the endpoint's answer through the picker: its headers,
// then its body chunk by chunk as it arrives, writing to the client what
// the picker returns for each (at once, for a stream). begun says the
// client has been sent the status; cancel ends the stream to the picker.
func respond(st extprocv3.ExternalProcessor_ProcessClient, cancel func(), w http.ResponseWriter, resp *http.Response,
	endpoint string) (begun bool, err error) {
	hs := []*corev3.HeaderValue{{Key: ":status", RawValue: []byte(strconv.Itoa(resp.StatusCode))}}
	for k, vs := range resp.Header {
		for _, v := range vs {
			hs = append(hs, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
		}
	}
	if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}},
	}}); err != nil {
		return false, err
	}
	ans, err := st.Recv()
	if err != nil {
		return false, err
	}
	hr, ok := ans.Response.(*extprocv3.ProcessingResponse_ResponseHeaders)
	if !ok {
		return false, fmt.Errorf("unexpected answer %T to response headers", ans.Response)
	}
	for k, vs := range resp.Header {
		if !hopByHop(k) && !strings.EqualFold(k, "content-length") {
			w.Header()[k] = vs
		}
	}
	mut := hr.ResponseHeaders.GetResponse().GetHeaderMutation()
	for _, h := range mut.GetSetHeaders() {
		if k := h.GetHeader().GetKey(); !strings.HasPrefix(k, ":") && !strings.EqualFold(k, "content-length") {
			w.Header().Set(k, headerValue(h.GetHeader()))
		}
	}
	for _, k := range mut.GetRemoveHeaders() {
		w.Header().Del(k)
	}
	w.Header().Set(EndpointHeader, endpoint)
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)

	// The body goes to the picker as it comes; what it returns goes to
	// the client, until it says the body has ended.
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				chunk := append([]byte(nil), buf[:n]...)
				if serr := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
					ResponseBody: &extprocv3.HttpBody{Body: chunk},
				}}); serr != nil {
					sent <- serr
					return
				}
			}
			if err == io.EOF {
				sent <- st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
					ResponseBody: &extprocv3.HttpBody{EndOfStream: true},
				}})
				return
			}
			if err != nil {
				// The endpoint cut its answer: the picker waits for
				// more, so the stream to it ends here.
				sent <- err
				cancel()
				return
			}
		}
	}()
	for {
		ans, err := st.Recv()
		if err != nil {
			select {
			case serr := <-sent:
				if serr != nil {
					return true, serr
				}
			default:
			}
			return true, err
		}
		br, ok := ans.Response.(*extprocv3.ProcessingResponse_ResponseBody)
		if !ok {
			continue // trailers' answers, say
		}
		bm := br.ResponseBody.GetResponse().GetBodyMutation()
		var chunk []byte
		end := false
		switch {
		case bm.GetStreamedResponse() != nil:
			chunk, end = bm.GetStreamedResponse().GetBody(), bm.GetStreamedResponse().GetEndOfStream()
		case bm.GetBody() != nil:
			chunk, end = bm.GetBody(), true
		}
		if len(chunk) > 0 {
			if _, err := w.Write(chunk); err != nil {
				return true, err
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if end {
			return true, <-sent
		}
	}
}

// immediate writes the picker's own answer (no endpoint, too many
// requests, a bad request).
func immediate(w http.ResponseWriter, ir *extprocv3.ImmediateResponse) {
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		if k := h.GetHeader().GetKey(); !strings.HasPrefix(k, ":") {
			w.Header().Set(k, headerValue(h.GetHeader()))
		}
	}
	code := int(ir.GetStatus().GetCode())
	if code == 0 {
		code = http.StatusInternalServerError
	}
	w.WriteHeader(code)
	w.Write(ir.GetBody()) //nolint:errcheck
}

// fail answers in OpenAI's error format.
func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{ //nolint:errcheck
		"message": msg, "type": "gateway_error", "code": strconv.Itoa(code)}})
}

// headerValue is a header's value, raw (as Envoy sends it) or not.
func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

func hopByHop(k string) bool {
	switch strings.ToLower(k) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host":
		return true
	}
	return false
}
