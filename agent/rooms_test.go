package agent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/agent"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server/servertest"
	"github.com/jbcalling/platform/sfu/signal"
)

// The SFU restarts (a deploy, a crash): every session ends. The agent
// finds the room again on the new SFU, once people are back in it, and
// captions again without being restarted itself.
func TestAgentRejoinsARestartedSFU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, _ := speakingRoom(ctx, t)
	listen := strings.TrimPrefix(first.URL, "http://")

	done := serveAgent(ctx, t, first, nil)
	caption := func(sfu *servertest.SFU) {
		t.Helper()
		captions := make(chan agent.Caption, 16)
		bo, err := client.Dial(ctx, sfu.WSURL(), client.Options{Room: "babel", Name: "Bo", TranslateTo: "es", SettingEngine: settingEngine(),
			OnEvent: func(m signal.Message) {
				if d, ok := m.(*signal.Data); ok && d.Topic == signal.TopicCaptions {
					var c agent.Caption
					if err := json.Unmarshal(d.Payload, &c); err == nil {
						captions <- c
					}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bo.Close() })
		for {
			select {
			case c := <-captions:
				if c.Final && strings.Contains(c.Text, "meeting") && c.Translations["es"] != "" {
					t.Logf("caption %+v", c)
					return
				}
			case err := <-done:
				t.Fatalf("the agent ended: %v", err)
			case <-ctx.Done():
				t.Fatal("no caption of Ana's sentence in time")
			}
		}
	}
	caption(first)

	first.Close()
	second := startSFU(t, listen)
	if second.URL != first.URL {
		t.Fatalf("the new SFU is at %s, not %s", second.URL, first.URL)
	}
	speakIn(ctx, t, second)
	restarted := time.Now()
	caption(second)
	t.Logf("captioning again %s after the restart", time.Since(restarted).Round(time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after its context ended: %v", err)
	}
}
