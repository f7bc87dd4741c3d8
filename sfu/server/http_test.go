package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/transport/v4/test"
)

func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("metric %s missing", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	return v
}

// /health and /metrics report what the rooms hold and what was forwarded.
// Operators read the metric list in sfu/README.md; every metric the server
// registers must be in it (and no longer in it once gone).
func TestEveryMetricIsDocumented(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	_, text := e.get(t, "/metrics")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# HELP (sfu_\w+) `).FindAllStringSubmatch(text, -1) {
		registered[m[1]] = true
		if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("sfu/README.md does not list %s", m[1])
		}
	}
	if len(registered) < 20 {
		t.Fatalf("/metrics has %d sfu_ metrics: %s", len(registered), text)
	}
	for _, m := range regexp.MustCompile("`(sfu_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1) {
		if name := m[1]; !registered[name] && !strings.HasSuffix(name, "_secret") {
			t.Errorf("sfu/README.md lists %s, which the server does not register", name)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()

	code, body := e.get(t, "/health")
	var h server.Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusOK || h.Status != "ok" || h.Rooms != 0 {
		t.Fatalf("/health = %d %s (%v)", code, body, err)
	}

	call := e.videoCall(t, nil)
	defer call.close()
	src, rt := call.src, call.rt
	if err := receiveInOrder(rt, 20); err != nil {
		t.Fatal(err)
	}

	_, body = e.get(t, "/health")
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Rooms != 1 || h.Participants != 2 || h.UptimeSeconds <= 0 {
		t.Fatalf("/health with two participants = %s", body)
	}
	code, text := e.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for name, min := range map[string]float64{
		"sfu_rooms": 1, "sfu_participants": 2, "sfu_tracks": 1,
		"sfu_packets_received_total": 20, "sfu_packets_forwarded_total": 20, "sfu_bytes_forwarded_total": 20 * 200,
		"sfu_keyframe_requests_total": 1, "sfu_join_duration_seconds_count": 2,
		// B's media left through the batched direct path, not pion's;
		// A's came in through the fast receive path.
		"sfu_subscribers_direct_total": 1, "sfu_direct_datagrams_total": 20,
		"sfu_publishers_fast_total": 1, "sfu_fast_received_total": 20,
		"process_cpu_seconds_total": 0, "process_resident_memory_bytes": 1,
		// pion's client offers AES-GCM first: the SFU sealed B's media itself.
		"sfu_subscribers_direct_aead_total": 1,
	} {
		if v := metricValue(t, text, name); v < min {
			t.Errorf("%s = %g, want >= %g", name, v, min)
		}
	}
	// The registry reads each counter at its own moment, so while media
	// flows a send between the two reads can show one call more than
	// datagrams: compare them once the media stopped and two scrapes agree.
	src.close()
	sends := func() (calls, sent float64) {
		_, text := e.get(t, "/metrics")
		return metricValue(t, text, "sfu_direct_send_calls_total"), metricValue(t, text, "sfu_direct_datagrams_total")
	}
	calls, sent := sends()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		c, s := sends()
		if c == calls && s == sent {
			break
		}
		calls, sent = c, s
	}
	if calls == 0 || calls > sent {
		t.Errorf("direct path: %g send calls for %g datagrams", calls, sent)
	}
	for _, name := range []string{"sfu_subscribers_pion_total", "sfu_publishers_pion_total", "sfu_fast_rejected_total"} {
		if v := metricValue(t, text, name); v != 0 {
			t.Errorf("%s = %g, want 0 (UDP through the mux is always direct and fast)", name, v)
		}
	}
	for _, name := range []string{"sfu_nacks_total", "sfu_plis_total", "sfu_retransmissions_total"} {
		metricValue(t, text, name)
	}
}

// The browser client and demo are served at / and /client/, Go sources
// that share their directory are not.
func TestStaticFiles(t *testing.T) {
	netns.Require(t)
	files := fstest.MapFS{
		"index.html": {Data: []byte("<!doctype html>demo")},
		"sfu.js":     {Data: []byte("export class Client {}")},
		"sfu.d.ts":   {Data: []byte("export class Client {}")},
		"web.go":     {Data: []byte("package web")},
	}
	e := start(t, func(c *server.Config) { c.Web = files })
	defer e.close()
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/", 200, "demo"},
		{"/client/sfu.js", 200, "export class Client"},
		{"/sfu.js", 200, "export class Client"},
		{"/web.go", 404, ""},
		{"/client/web.go", 404, ""},
		{"/nope.js", 404, ""},
	} {
		code, body := e.get(t, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
	// The real frontend, on another origin, imports the module.
	resp, err := http.Get(e.hs.URL + "/client/sfu.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("/client/sfu.js Access-Control-Allow-Origin = %q, want *", got)
	}
	// Its declarations beside it, as TypeScript (not an MPEG stream).
	resp, err = http.Get(e.hs.URL + "/client/sfu.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "application/typescript") {
		t.Errorf("/client/sfu.d.ts = %d %q, want 200 application/typescript", resp.StatusCode, ct)
	}
}

// The room, room-count and track limits refuse what goes beyond them.
func TestLimits(t *testing.T) {
	netns.Require(t)
	defer test.CheckRoutines(t)()
	e := start(t, func(c *server.Config) { c.MaxRooms, c.MaxParticipants, c.MaxTracks = 1, 2, 1 })
	defer e.close()

	a := e.join("room", "A", nil)
	defer a.Close()
	b := e.join("room", "B", nil)
	defer b.Close()
	for _, tc := range []struct{ room, code string }{
		{"room", signal.CodeRoomFull},
		{"second-room", signal.CodeTooManyRooms},
	} {
		_, err := e.dial(tc.room, "C", nil)
		var se *signal.Error
		if !errors.As(err, &se) || se.Code != tc.code {
			t.Fatalf("join %s: %v, want %s", tc.room, err, tc.code)
		}
	}

	cam := a.publish(t, "cam", vp8Cap)
	defer cam.close()
	mic := a.publish(t, "mic", opusCap)
	defer mic.close()
	a.expectEvent(t, "too_many_tracks", func(m signal.Message) bool {
		se, ok := m.(*signal.Error)
		return ok && se.Code == signal.CodeTooManyTracks
	})
	var rt *client.RemoteTrack
	select { // whichever of the two reached the SFU first
	case rt = <-b.tracks:
	case <-time.After(15 * time.Second):
		t.Fatal("B received none of A's tracks")
	}
	go drainTrack(rt)
	select {
	case extra := <-b.tracks:
		t.Fatalf("B received a track beyond the limit: %s", extra.TrackID)
	case <-time.After(time.Second):
	}
	cam.close()
	mic.close()
	a.Close()
	b.Close()
}

// Draining tells clients, refuses new joins, answers 503 on /health and
// closes remaining sessions at the deadline.
func TestDrain(t *testing.T) {
	netns.Require(t)
	defer test.CheckRoutines(t)()
	e := start(t, nil)
	defer e.close()
	a := e.join("room", "A", nil)
	defer a.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	drained := make(chan struct{})
	go func() { e.srv.Drain(ctx); close(drained) }()

	d := a.expectEvent(t, "draining", func(m signal.Message) bool { _, ok := m.(*signal.Draining); return ok }).(*signal.Draining)
	if d.DeadlineMS <= 0 || d.DeadlineMS > 2000 {
		t.Errorf("draining deadline %d ms, want within 2000", d.DeadlineMS)
	}
	if code, body := e.get(t, "/health"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"draining"`) {
		t.Errorf("/health while draining = %d %s", code, body)
	}
	if _, err := e.dial("room", "late", nil); err == nil {
		t.Error("a join while draining was accepted")
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the SFU did not close the session at the drain deadline")
	}
	<-drained
	if _, ps := e.srv.Rooms().Stats(); ps != 0 {
		t.Fatalf("%d participants after draining", ps)
	}
	a.Close()
}
