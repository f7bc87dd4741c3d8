package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
)

// Data messages reach everyone else, or only those named, stamped with
// the sender and the server's time; bad ones get an error and the
// session goes on.
func TestData(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.DataRate, c.DataBurst = 5, 5 })
	defer e.close()
	ana, bo, cy := e.raw(t), e.raw(t), e.raw(t)
	defer ana.close()
	defer bo.close()
	defer cy.close()
	anaID := ana.join("chat").ID
	boID := bo.join("chat").ID
	cyID := cy.join("chat").ID

	before := time.Now().UnixMilli()
	ana.send(`{"type":"data","topic":"chat","payload":{"text":"hola"}}`)
	for _, r := range []*rawConn{bo, cy} {
		d := r.expect(t, signal.TypeData, nil).(*signal.Data)
		if d.From != anaID || d.Topic != "chat" || string(d.Payload) != `{"text":"hola"}` || d.TS < before || d.TS > time.Now().UnixMilli() {
			t.Fatalf("got %+v (payload %s), want Ana's chat stamped now", d, d.Payload)
		}
	}

	// To Cy alone: Bo gets nothing (his next message is the pong).
	ana.send(`{"type":"data","topic":"chat","payload":"psst","to":["` + cyID + `"]}`)
	if d := cy.expect(t, signal.TypeData, nil).(*signal.Data); string(d.Payload) != `"psst"` || len(d.To) != 1 || d.To[0] != cyID {
		t.Fatalf("Cy got %+v", d)
	}
	bo.send(`{"type":"ping"}`)
	if m := bo.expect(t, signal.TypePong, func(m signal.Message) bool { return true }); m == nil {
		t.Fatal("no pong")
	}
	_ = boID

	ana.send(`{"type":"data","topic":"chat","payload":1,"to":["p-nobody"]}`)
	if e := ana.expectError(signal.CodeUnknownParticipant); !strings.Contains(e.Message, "p-nobody") {
		t.Fatalf("error %q does not name the unknown participant", e.Message)
	}
	ana.send(`{"type":"data","topic":"chat","payload":1,"from":"` + boID + `"}`)
	ana.expectError(signal.CodeBadMessage)
	ana.send(`{"type":"data","topic":"chat","payload":"` + strings.Repeat("x", signal.MaxDataPayload) + `"}`)
	ana.expectError(signal.CodeBadMessage)

	// The burst is 5: a flood of 10 gets rate_limited, not a disconnect.
	for i := range 10 {
		b, _ := json.Marshal(map[string]any{"type": "data", "topic": "chat", "payload": i})
		ana.send(string(b))
	}
	ana.expectError(signal.CodeRateLimited)
	ana.expectAlive()
}
