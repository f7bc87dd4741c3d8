// Package servertest runs an in-process SFU for tests. It is a normal
// package so that other packages' tests can import it; nothing outside
// tests should use it.
package servertest

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jbcalling/platform/sfu/server"
)

// SFU is an in-process SFU served over plain HTTP.
type SFU struct {
	Server *server.Server
	HTTP   *httptest.Server
	URL    string // http://host:port

	once sync.Once
}

// Start runs an in-process SFU for a test: the config is server.Defaults()
// with ICE bound to addr (UDP port 0 picks a free port, ICE-TCP off) and
// the HTTP listener on 127.0.0.1:0, then mod (if not nil) is applied. The
// handler is served by httptest on cfg.Listen; the server's own Run is not
// used. Close drains and closes it; it is also registered with t.Cleanup.
func Start(t testing.TB, addr string, mod func(*server.Config)) *SFU {
	t.Helper()
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.ICEBind = addr
	cfg.ICEUDPPort, cfg.ICETCPPort = 0, -1
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close()
		t.Fatalf("listen on %s: %v", cfg.Listen, err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	srv.ConfigureHTTP(hs.Config)
	hs.Listener.Close()
	hs.Listener = srv.LimitListener(l)
	hs.Start()
	s := &SFU{Server: srv, HTTP: hs, URL: hs.URL}
	t.Cleanup(s.Close)
	return s
}

// WSURL is the signalling endpoint, ws://host:port/ws.
func (s *SFU) WSURL() string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/ws"
}

// Close drains the SFU (ending every session, waiting at most 5 s), then
// stops HTTP and ICE. Only the first call does anything.
func (s *SFU) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Server.Drain(ctx)
		s.HTTP.CloseClientConnections()
		s.HTTP.Close()
		s.Server.Close()
	})
}

// Logger logs at level and above through t.Log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
