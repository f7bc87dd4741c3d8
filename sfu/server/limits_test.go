package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/server"
)

// An HTTP keep-alive connection idle between requests is closed: 3000
// idle ones stayed open indefinitely.
func TestIdleHTTPConnectionsClose(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.HTTPIdleTimeout = 300 * time.Millisecond })
	defer e.close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.hs.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil { // until the server closes it
		t.Fatalf("the idle connection was not closed: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %s, idle timeout 300ms", d)
	}
}

// One address holds at most --max-conns-per-ip connections: the next is
// closed as soon as it is accepted.
func TestConnectionsPerAddress(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.MaxConnsPerIP = 3 })
	defer e.close()
	addr := strings.TrimPrefix(e.hs.URL, "http://")
	var held []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 12)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "HTTP/1.1 200" {
			t.Fatalf("connection %d: %q, %v", i+1, buf, err)
		}
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_, _ = io.WriteString(extra, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 12)); err == nil {
		t.Fatalf("the 4th connection from one address was served (%d bytes)", n)
	}
	for _, c := range held {
		c.Close()
	}
	// The server notices the closes on its own time; until then a new
	// connection would be the 4th.
	waitFor(t, "the closed connections to free their places", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 12)
		_, err = io.ReadFull(c, buf)
		return err == nil && string(buf) == "HTTP/1.1 200"
	})
	if _, text := e.get(t, "/metrics"); metricValue(t, text, "sfu_connections_refused_total") < 1 {
		t.Fatal("the refused connection is not counted")
	}
}

// One address holds at most --max-websockets-per-ip signalling sockets;
// the next gets 429.
func TestWebSocketsPerAddress(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.MaxWebSocketsPerIP = 2 })
	defer e.close()
	for range 2 {
		r := e.raw(t)
		defer r.close()
	}
	_, resp, err := websocket.Dial(context.Background(), e.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("3rd socket from one address: %v (%v), want 429", err, resp)
	}
}

// With --metrics-listen, /metrics is served there only, not beside
// /health on the public listeners (nor through Traefik's route to them).
func TestMetricsOnTheirOwnListener(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.MetricsListen = "127.0.0.1:9" }) // not started by the test's harness
	defer e.close()
	if code, _ := e.get(t, "/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics on the public listener: %d, want 404", code)
	}
	rec := httptest.NewRecorder()
	e.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "sfu_participants") {
		t.Fatalf("the metrics handler: %d", rec.Code)
	}
}

// A flood of malformed STUN datagrams at the ICE port leaves the log
// almost untouched (it logged one line per datagram).
func TestMalformedSTUNFloodIsNotLogged(t *testing.T) {
	netns.Require(t)
	var lines atomic.Int64
	e := start(t, func(c *server.Config) {
		c.Logger = slog.New(countingHandler{&lines})
	})
	defer e.close()
	conn, err := net.Dial("udp", e.srv.ICEUDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A STUN header (type binding request, magic cookie) with a bad body.
	bad := append([]byte{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 20)...)
	before := lines.Load()
	for i := range 5000 {
		bad[8] = byte(i)
		if _, err := conn.Write(bad); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := lines.Load() - before; n > 100 {
		t.Fatalf("5000 malformed STUN datagrams logged %d lines at info and above", n)
	}
}

// countingHandler counts the lines logged at info level and above.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h countingHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
