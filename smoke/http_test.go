package smoke

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// untrustingClient trusts no certificate: an empty root pool rather than
// the system's, whose first load alone outlasted a 300 ms check timeout on
// a busy machine (a flaky "no response" instead of the certificate error).
func untrustingClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
}

// replicaSet stands in for Traefik in front of three frontend replicas:
// request i goes to replica i mod 3 (round robin), and `bad` decides what a
// replica does instead of answering 200.
func replicaSet(bad func(replica int, w http.ResponseWriter, r *http.Request) bool) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		replica := int(n.Add(1)-1) % 3
		if bad != nil && bad(replica, w, r) {
			return
		}
		w.Header().Set("X-Replica", fmt.Sprintf("frontend.%d", replica+1))
		fmt.Fprintln(w, "<!doctype html><title>frontend</title>")
	})
}

func TestGetEveryReplica(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cases := []struct {
		name     string
		handler  http.Handler
		trusted  bool   // the client trusts the server's certificate
		host     string // request this host instead of 127.0.0.1
		header   string
		wantErr  []string // substrings of the error; none means success
		wantSeen int
	}{
		{
			name:     "every replica answers 200",
			handler:  replicaSet(nil),
			trusted:  true,
			header:   "X-Replica",
			wantSeen: 3,
		},
		{
			name:    "without a replica header, every request must still be 200",
			handler: replicaSet(nil),
			trusted: true,
		},
		{
			name: "a replica on another node is unreachable: 504",
			handler: replicaSet(func(replica int, w http.ResponseWriter, _ *http.Request) bool {
				if replica == 2 {
					http.Error(w, "Gateway Timeout", http.StatusGatewayTimeout)
					return true
				}
				return false
			}),
			trusted: true,
			wantErr: []string{"(request 3 of 12)", "504 Gateway Timeout", "4789/udp"},
		},
		{
			name: "a replica hangs: timeout naming the URL",
			handler: replicaSet(func(replica int, _ http.ResponseWriter, r *http.Request) bool {
				if replica == 1 {
					<-r.Context().Done()
					return true
				}
				return false
			}),
			trusted: true,
			wantErr: []string{"(request 2 of 12)", "no response within 300ms"},
		},
		{
			name:    "a certificate no browser trusts",
			handler: replicaSet(nil),
			trusted: false,
			wantErr: []string{"(request 1 of 12)", "certificate signed by unknown authority"},
		},
		{
			name:    "a certificate for another name",
			handler: replicaSet(nil),
			trusted: true,
			host:    "localhost",
			wantErr: []string{"https://localhost:", "certificate is valid for", "not localhost"},
		},
		{
			name: "the router has no route: 404",
			handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.NotFound(w, r)
			}),
			trusted: true,
			wantErr: []string{"status 404 Not Found, want 200 OK", "404 page not found"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(c.handler)
			defer srv.Close()
			h := HTTPChecker{Timeout: timeout, Client: untrustingClient()}
			if c.trusted {
				h.Client = srv.Client()
			}
			url := srv.URL + "/"
			if c.host != "" {
				url = strings.Replace(url, "127.0.0.1", c.host, 1)
			}
			got, err := h.GetEveryReplica(context.Background(), url, 3, c.header)
			if len(c.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got.Requests != 12 {
					t.Errorf("made %d requests, want 12 (4 per replica)", got.Requests)
				}
				if len(got.Seen) != c.wantSeen {
					t.Errorf("saw replicas %v, want %d distinct", got.Seen, c.wantSeen)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", c.wantErr)
			}
			for _, want := range append([]string{url}, c.wantErr...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestReplicaHeaderProvesCoverage(t *testing.T) {
	// Two replicas answer, the third's requests are served by the others
	// (as when a replica's node is cut off and the proxy retries elsewhere).
	var n atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Replica", fmt.Sprintf("frontend.%d", n.Add(1)%2))
	}))
	defer srv.Close()
	_, err := HTTPChecker{Client: srv.Client()}.GetEveryReplica(context.Background(), srv.URL, 3, "X-Replica")
	if err == nil || !strings.Contains(err.Error(), "reached 2 distinct replicas") {
		t.Fatalf("want an error naming 2 of 3 replicas reached, got %v", err)
	}
}

func TestEveryRequestOpensANewConnection(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(replicaSet(nil))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns[c.RemoteAddr().String()] = true
			mu.Unlock()
		}
	}
	srv.StartTLS()
	defer srv.Close()
	if _, err := (HTTPChecker{Client: srv.Client()}).GetEveryReplica(context.Background(), srv.URL, 2, ""); err != nil {
		t.Fatal(err)
	}
	srv.Close() // waits for the handlers, so conns is complete
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 8 {
		t.Errorf("8 requests used %d connections; each must use its own, as separate visitors do", len(conns))
	}
}

func TestSFUHealth(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"serving", 200, `{"status":"ok","rooms":2,"participants":5,"uptime_seconds":30}`, ""},
		{"draining answers 503", 503, `{"status":"draining"}`, "status 503 Service Unavailable"},
		{"not JSON (some other server on 8443)", 200, `<html>nginx</html>`, "not the SFU's health JSON"},
		{"JSON without status", 200, `{"rooms":1}`, "health JSON has no status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/health" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(c.status)
				fmt.Fprint(w, c.body)
			}))
			defer srv.Close()
			h, err := HTTPChecker{Client: srv.Client()}.SFUHealth(context.Background(), srv.URL+"/")
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if h.Status != "ok" || h.Rooms != 2 || h.Participants != 5 {
					t.Errorf("health = %+v", h)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), srv.URL+"/health") {
				t.Errorf("error %v, want one naming %s/health and containing %q", err, srv.URL, c.wantErr)
			}
		})
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, _ = c.Read(r.Context()) // until the client closes
	})
	// What the old cluster had: a proxy that answers plain HTTP on the
	// WebSocket path.
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Bad Gateway", http.StatusBadGateway)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	wss := "wss" + strings.TrimPrefix(srv.URL, "https")
	h := HTTPChecker{Client: srv.Client(), Timeout: time.Second}

	if err := h.WebSocket(context.Background(), wss+"/ws"); err != nil {
		t.Errorf("upgrade on /ws: %v", err)
	}
	err := h.WebSocket(context.Background(), wss+"/plain")
	if err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") || !strings.Contains(err.Error(), wss+"/plain") {
		t.Errorf("a 502 instead of an upgrade: got %v, want an error naming the URL and the 502", err)
	}
	err = HTTPChecker{Client: untrustingClient(), Timeout: time.Second}.WebSocket(context.Background(), wss+"/ws")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: got %v, want a certificate error", err)
	}
}
