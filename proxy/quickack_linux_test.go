package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// splitBody is what splitBackend answers.
const splitBody = `{"status":"ok"}`

// newRawBackend serves splitBody on 127.0.0.1, any number of requests per
// connection. With split, it answers as Python's http.server does: the
// status line and headers in one write, the body in a second, with
// TCP_NODELAY off; without, in one write, as Go's servers and
// llama-server do. It returns the backend's address.
func newRawBackend(t testing.TB, split bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if split {
				_ = c.(*net.TCPConn).SetNoDelay(false)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(splitBody)) + "\r\n\r\n"
					writes := []string{head, splitBody}
					if !split {
						writes = []string{head + splitBody}
					}
					for _, w := range writes {
						if _, err := io.WriteString(c, w); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// countingClient is an upstreamClient for addr that counts the
// connections it dials and the times it asks for a quick ACK; with
// quickAcks false it never asks (hotswap before TCP_QUICKACK).
func countingClient(t testing.TB, addr string, quickAcks bool) (c *upstreamClient, dials, acks *atomic.Int64) {
	c, err := newUpstreamClient("http://"+addr, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	dials, acks = new(atomic.Int64), new(atomic.Int64)
	c.hc.Dial = func(addr string) (net.Conn, error) {
		conn, err := dialUpstream(addr)
		if err != nil {
			return nil, err
		}
		dials.Add(1)
		uc := conn.(*upConn)
		if set := uc.quickAck; set != nil && quickAcks {
			uc.quickAck = func() { acks.Add(1); set() }
		} else {
			uc.quickAck = nil
		}
		return uc, nil
	}
	t.Cleanup(c.hc.CloseIdleConnections)
	return c, dials, acks
}

// getBody sends GET path with c.do and returns the status and the body.
func getBody(c *upstreamClient, path string) (int, string, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(path)
	req.Header.SetHost("backend")
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.do(req, resp); err != nil {
		return 0, "", err
	}
	var body []byte
	if r := resp.BodyStream(); r != nil {
		b, err := io.ReadAll(r)
		if err != nil {
			return 0, "", err
		}
		body = b
	} else {
		body = resp.Body()
	}
	return resp.StatusCode(), string(body), resp.CloseBodyStream()
}

// TestSplitAnswersOnOneConnection: a backend that writes headers and body
// apart without TCP_NODELAY is answered whole, every time, on the one
// connection kept; the body found waiting is what hotswap acknowledges at
// once (quickAck), not an answer that came whole.
func TestSplitAnswersOnOneConnection(t *testing.T) {
	c, dials, acks := countingClient(t, newRawBackend(t, true), true)
	const n = 20
	for i := range n {
		status, body, err := getBody(c, "/health")
		if status != 200 || body != splitBody || err != nil {
			t.Fatalf("request %d: %d %q %v", i, status, body, err)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d connections for %d requests, want 1", d, n)
	}
	// The first answer, on a new connection, may come whole (Linux does
	// not delay ACKs there); the later ones wait for hotswap's ACK.
	if a := acks.Load(); a < n/2 {
		t.Errorf("quick ACKs asked %d times in %d answers: the answers did not come in parts", a, n)
	}
}

// TestWholeAnswersAskForNoQuickAck: an answer that comes in one read, as
// from llama-server and most servers, costs no system call more; the
// connection is kept as before.
func TestWholeAnswersAskForNoQuickAck(t *testing.T) {
	c, dials, acks := countingClient(t, newRawBackend(t, false), true)
	const n = 20
	for i := range n {
		status, body, err := getBody(c, "/whole")
		if status != 200 || body != splitBody || err != nil {
			t.Fatalf("request %d: %d %q %v", i, status, body, err)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d connections for %d requests, want 1", d, n)
	}
	if a := acks.Load(); a != 0 {
		t.Errorf("quick ACKs asked %d times for %d whole answers, want 0", a, n)
	}
}

// BenchmarkUpstreamSplitWrites is one request from hotswap's upstream
// client, on its kept connection, to a backend that writes headers and
// body apart without TCP_NODELAY: "quickack" as hotswap sends it,
// "delayed-ack" without TCP_QUICKACK (hotswap before), and, as the
// baseline, "fresh": net/http on a new connection each time. "whole" is
// hotswap's client against a backend that answers in one write. ns/op is
// the mean; ms-median the median.
func BenchmarkUpstreamSplitWrites(b *testing.B) {
	split, whole := newRawBackend(b, true), newRawBackend(b, false)
	upstream := func(addr string, quickAcks bool) func() error {
		c, _, _ := countingClient(b, addr, quickAcks)
		return func() error {
			status, _, err := getBody(c, "/")
			if err == nil && status != 200 {
				err = fmt.Errorf("status %d", status)
			}
			return err
		}
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, bc := range []struct {
		name string
		send func() error
	}{
		{"quickack", upstream(split, true)},
		{"delayed-ack", upstream(split, false)},
		{"fresh", func() error {
			resp, err := fresh.Get("http://" + split + "/")
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return err
		}},
		{"whole", upstream(whole, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			took := make([]time.Duration, 0, b.N)
			for range b.N {
				began := time.Now()
				if err := bc.send(); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(began))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
		})
	}
}
