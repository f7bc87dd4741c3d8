package server_test

import (
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
)

// Participants say what they speak and want at join and later; everyone
// sees it. Only a participant whose token marks it as an agent may send
// captions, and the others see it as an agent.
func TestLanguagesAndAgents(t *testing.T) {
	netns.Require(t)
	secret := []byte("languages-test-secret")
	e := start(t, func(c *server.Config) { c.JWTSecret = secret }) // anonymous joins still allowed
	defer e.close()
	ana, bo, agent := e.raw(t), e.raw(t), e.raw(t)
	defer ana.close()
	defer bo.close()
	defer agent.close()

	ana.send(`{"type":"join","v":1,"room":"babel","name":"Ana","language":"en","translateTo":"es"}`)
	anaID := ana.expect(t, signal.TypeJoined, nil).(*signal.Joined).ID
	tok, err := auth.SignAgent(secret, auth.AnyRoom, "translator", "Translator", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	agent.send(`{"type":"join","v":1,"room":"babel","token":"` + tok + `"}`)
	aj := agent.expect(t, signal.TypeJoined, nil).(*signal.Joined)
	if len(aj.Participants) != 1 || aj.Participants[0].Language != "en" || aj.Participants[0].TranslateTo != "es" || aj.Participants[0].Agent {
		t.Fatalf("the agent sees %+v, want Ana speaking en, wanting es, no agent", aj.Participants)
	}
	pj := ana.expect(t, signal.TypeParticipantJoined, nil).(*signal.ParticipantJoined)
	if !pj.Participant.Agent || pj.Participant.Name != "Translator" {
		t.Fatalf("Ana sees %+v join, want the agent marked as one", pj.Participant)
	}

	bo.send(`{"type":"join","v":1,"room":"babel","name":"Bo"}`)
	bo.expect(t, signal.TypeJoined, nil)
	ana.send(`{"type":"languages","language":"en","translateTo":"de"}`)
	for _, r := range []*rawConn{bo, agent} {
		l := r.expect(t, signal.TypeLanguages, nil).(*signal.Languages)
		if l.ParticipantID != anaID || l.Language != "en" || l.TranslateTo != "de" {
			t.Fatalf("got %+v, want Ana now wanting de", l)
		}
	}
	ana.send(`{"type":"languages","language":"english","translateTo":"de"}`)
	ana.expectError(signal.CodeBadMessage)
	bo.send(`{"type":"join","v":1,"room":"babel2","language":"--x"}`)
	bo.expectError(signal.CodeBadMessage)

	// Captions: an agent's reach everyone; anyone else's are refused.
	agent.send(`{"type":"data","topic":"captions","payload":{"speaker":"` + anaID + `","text":"hola"}}`)
	if d := bo.expect(t, signal.TypeData, nil).(*signal.Data); d.Topic != signal.TopicCaptions || d.From != aj.ID {
		t.Fatalf("Bo got %+v, want the agent's caption", d)
	}
	ana.send(`{"type":"data","topic":"captions","payload":{"speaker":"p-x","text":"forged"}}`)
	ana.expectError(signal.CodeUnauthorized)
	ana.expectAlive()
}
