package smoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// DefaultRequestTimeout bounds one request. It is below Traefik's 30 s dial
// timeout on purpose: a replica Traefik cannot reach across nodes (the old
// cluster's blocked 4789/udp) then shows up here as a timeout naming the URL
// rather than a 504 half a minute later.
const DefaultRequestTimeout = 10 * time.Second

// HTTPChecker runs the HTTPS checks. The zero value uses the system's
// certificate roots (a real cluster's certificates must verify) and
// DefaultRequestTimeout.
type HTTPChecker struct {
	// Client carries the TLS configuration; tests pass their test server's
	// client. Its keep-alives are not used: every request opens a new
	// connection, as a new visitor would.
	Client  *http.Client
	Timeout time.Duration
}

func (h HTTPChecker) client() *http.Client {
	base := h.Client
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	var tr *http.Transport
	if t, ok := base.Transport.(*http.Transport); ok {
		tr = t.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr.DisableKeepAlives = true
	c.Transport = tr
	c.Timeout = 0 // per-request contexts bound the time instead
	return &c
}

func (h HTTPChecker) timeout() time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return DefaultRequestTimeout
}

// Replicas is what GetEveryReplica saw.
type Replicas struct {
	Requests int
	// Seen counts responses per value of the replica header (empty when no
	// header was asked for or the backend does not send it).
	Seen map[string]int
}

// GetEveryReplica requests url until every replica behind the router has
// answered: `replicas` times 4 requests, each on a new connection, so that
// Traefik's round robin sends several to each replica, those on other nodes
// included (the cross-node path that gave the old cluster its 504s). Every
// response must be 200. When replicaHeader is set (a header the backend sets
// to its task or host name), at least `replicas` distinct values must be
// seen, which proves the coverage instead of relying on round robin.
func (h HTTPChecker) GetEveryReplica(ctx context.Context, url string, replicas int, replicaHeader string) (Replicas, error) {
	if replicas < 1 {
		replicas = 1
	}
	n := 4 * replicas
	got := Replicas{Seen: map[string]int{}}
	c := h.client()
	for i := 1; i <= n; i++ {
		resp, err := h.get(ctx, c, url, fmt.Sprintf("request %d of %d", i, n))
		if err != nil {
			return got, err
		}
		got.Requests++
		if replicaHeader != "" {
			got.Seen[resp.Header.Get(replicaHeader)]++
		}
	}
	if replicaHeader != "" {
		delete(got.Seen, "")
		if len(got.Seen) < replicas {
			return got, fmt.Errorf("GET %s: %d requests reached %d distinct replicas by %s (%v), want %d: some replicas never answer",
				url, n, len(got.Seen), replicaHeader, got.Seen, replicas)
		}
	}
	return got, nil
}

// GetOK requests url once and requires 200; it returns the body (at most
// 1 MiB).
func (h HTTPChecker) GetOK(ctx context.Context, url string) ([]byte, error) {
	resp, err := h.get(ctx, h.client(), url, "")
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}

type response struct {
	Header http.Header
	body   []byte
}

func (h HTTPChecker) get(ctx context.Context, c *http.Client, url, which string) (*response, error) {
	what := "GET " + url
	if which != "" {
		what += " (" + which + ")"
	}
	rctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, describeTransportError(what, h.timeout(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, describeTransportError(what+": reading the body", h.timeout(), err)
	}
	switch {
	case resp.StatusCode == http.StatusGatewayTimeout:
		return nil, fmt.Errorf("%s: 504 Gateway Timeout: the proxy could not reach a backend replica "+
			"(across nodes this means overlay traffic is blocked: 4789/udp between nodes, or an overlay MTU above the VPC's)", what)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: status %s, want 200 OK (body: %.200q)", what, resp.Status, body)
	}
	return &response{Header: resp.Header, body: body}, nil
}

func describeTransportError(what string, timeout time.Duration, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) && uerr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: no response within %s", what, timeout)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Health is the SFU's /health document (sfu/PROTOCOL.md).
type Health struct {
	Status       string `json:"status"`
	Rooms        int    `json:"rooms"`
	Participants int    `json:"participants"`
}

// SFUHealth fetches base/health (base is https://webrtc.<domain>:8443) and
// requires 200 with a JSON body: a draining SFU answers 503 and fails.
func (h HTTPChecker) SFUHealth(ctx context.Context, base string) (Health, error) {
	u := strings.TrimSuffix(base, "/") + "/health"
	body, err := h.GetOK(ctx, u)
	if err != nil {
		return Health{}, err
	}
	var hl Health
	if err := json.Unmarshal(body, &hl); err != nil {
		return Health{}, fmt.Errorf("GET %s: not the SFU's health JSON: %v (body: %.200q)", u, err, body)
	}
	if hl.Status == "" {
		return hl, fmt.Errorf("GET %s: health JSON has no status (body: %.200q)", u, body)
	}
	return hl, nil
}

// WebSocket opens a WebSocket to wsURL (wss://webrtc.<domain>:8443/ws), as
// a browser does, and closes it again. It proves the upgrade passes every
// hop (the old cluster's Traefik never routed the gateway's WebSocket).
func (h HTTPChecker) WebSocket(ctx context.Context, wsURL string) error {
	rctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()
	conn, resp, err := websocket.Dial(rctx, wsURL, &websocket.DialOptions{HTTPClient: h.client()})
	if err != nil {
		if resp != nil {
			return fmt.Errorf("WebSocket %s: upgrade refused with %s: %w", wsURL, resp.Status, err)
		}
		return describeTransportError("WebSocket "+wsURL, h.timeout(), err)
	}
	return conn.Close(websocket.StatusNormalClosure, "smoke test")
}
