package main

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jbcalling/platform/agent/tts"
)

func TestFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{"AGENT_TTS": "none", "AGENT_JWT_SECRET_FILE": "/run/secrets/s", "AGENT_POLL": "5s"}
	o, err := parse([]string{"--mt", "http://translation:2737"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.tts != "none" || o.secretFile != "/run/secrets/s" || o.every.String() != "5s" || o.mt != "http://translation:2737" {
		t.Fatalf("%+v, want the environment's tts, secret and poll, the flag's mt", o)
	}
	cfg, err := engines(o, nil)
	if err != nil || cfg.Synthesizer != nil {
		t.Fatalf("%v %+v, want captions only", err, cfg.Synthesizer)
	}
	o.tts = "espeak-ng"
	if cfg, _ := engines(o, nil); !isEspeak(cfg.Synthesizer) {
		t.Fatalf("%+v, want espeak-ng", cfg.Synthesizer)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "--jwt-secret-file is required"},
		{[]string{"--room", "r", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"--room", "r"}, map[string]string{"AGENT_POLL": "often"}, `AGENT_POLL="often"`},
	} {
		_, err := parse(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: %v, want an error naming %s", c.args, c.env, err, c.want)
		}
	}
	for _, bad := range []options{{stt: "whisper", mt: "apertium", tts: "none"}, {stt: "pocketsphinx", mt: "deepl", tts: "none"}, {stt: "pocketsphinx", mt: "apertium", tts: "festival"}} {
		if _, err := engines(&bad, nil); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestRoomsURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://sfu:8080/ws":        "http://sfu:8080/agent/rooms",
		"wss://webrtc.example/ws": "https://webrtc.example/agent/rooms",
		"http://sfu:8080/ws":      "",
		"sfu:8080":                "",
	} {
		got, err := roomsURL(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("roomsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The health check fails until the SFU's rooms were listed, and whenever
// the last listing failed.
func TestHealth(t *testing.T) {
	h := &health{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	check := func() int {
		return healthcheck([]string{srv.URL + "/health"}, func(string) string { return "" }, io.Discard)
	}
	if check() != 1 {
		t.Error("healthy before the first listing")
	}
	h.set(nil)
	if check() != 0 {
		t.Error("unhealthy after a listing")
	}
	h.set(errors.New("agent: listing rooms: connection refused"))
	if check() != 1 {
		t.Error("healthy after a failed listing")
	}
}

func isEspeak(s tts.Synthesizer) bool { _, ok := s.(tts.Espeak); return ok }
