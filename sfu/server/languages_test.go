package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
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

// heard counts the packets a peer receives per publisher and track, over
// every remote track it is given (a track given again counts on).
type heard struct {
	mu sync.Mutex
	n  map[string]int
}

func listen(p *peer) *heard {
	h := &heard{n: map[string]int{}}
	go func() {
		for {
			var rt *client.RemoteTrack
			select {
			case rt = <-p.tracks:
			case <-p.Done():
				return
			}
			go func() {
				key := rt.ParticipantID + "/" + rt.TrackID
				for {
					if _, _, err := rt.Track.ReadRTP(); err != nil {
						return
					}
					h.mu.Lock()
					h.n[key]++
					h.mu.Unlock()
				}
			}()
		}
	}()
	return h
}

func (h *heard) count(publisher, track string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[publisher+"/"+track]
}

// flowing reports whether publisher's track reaches h now: packets
// arrive within a second.
func (h *heard) flowing(publisher, track string) bool {
	before := h.count(publisher, track)
	time.Sleep(time.Second)
	return h.count(publisher, track) > before
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// An agent's translation of Ana into Spanish reaches those who want
// Spanish in place of her own voice, and nobody else; wanting nothing
// brings her voice back.
func TestTranslationReplacesTheVoice(t *testing.T) {
	netns.Require(t)
	secret := []byte("translation-test-secret")
	e := start(t, func(c *server.Config) { c.JWTSecret = secret })
	defer e.close()
	ana := e.join("babel", "Ana", func(o *client.Options) { o.Language = "en" })
	defer ana.Close()
	bo := e.join("babel", "Bo", func(o *client.Options) { o.TranslateTo = "es" })
	defer bo.Close()
	cy := e.join("babel", "Cy", nil)
	defer cy.Close()
	tok, err := auth.SignAgent(secret, "babel", "translator", "Translator", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	agent := e.join("babel", "Translator", func(o *client.Options) { o.Token = tok })
	defer agent.Close()
	heardBy := map[string]*heard{"Ana": listen(ana), "Bo": listen(bo), "Cy": listen(cy)}
	listen(agent) // it must read what it receives

	voice := ana.publish(t, "voice", opusCap)
	defer voice.close()
	eventually(t, "Bo and Cy hear Ana", func() bool {
		return heardBy["Bo"].count(ana.ID(), "voice") > 0 && heardBy["Cy"].count(ana.ID(), "voice") > 0
	})

	// A person may not publish a translation.
	tr, _ := webrtc.NewTrackLocalStaticRTP(opusCap, "fake", cy.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cy.PublishTranslation(ctx, ana.ID(), "es", tr); err == nil {
		t.Error("Cy published a translation")
	}

	dub, err := webrtc.NewTrackLocalStaticRTP(opusCap, "ana-es", agent.ID())
	if err != nil {
		t.Fatal(err)
	}
	sender, err := agent.PublishTranslation(ctx, ana.ID(), "es", dub)
	if err != nil {
		t.Fatal(err)
	}
	dubbing := &source{track: dub, sender: sender, stop: make(chan struct{}), done: make(chan struct{})}
	go dubbing.run()
	defer dubbing.close()

	eventually(t, "Bo hears the Spanish", func() bool { return heardBy["Bo"].count(agent.ID(), "ana-es") > 0 })
	eventually(t, "Bo no longer hears Ana's own voice", func() bool { return !heardBy["Bo"].flowing(ana.ID(), "voice") })
	if !heardBy["Cy"].flowing(ana.ID(), "voice") {
		t.Error("Cy, who wants no translation, stopped hearing Ana")
	}
	if heardBy["Cy"].count(agent.ID(), "ana-es") > 0 || heardBy["Ana"].count(agent.ID(), "ana-es") > 0 {
		t.Error("the Spanish reached someone who does not want it (Cy, or Ana herself)")
	}
	var info *signal.Track
	for _, ev := range drainEvents(cy) {
		if tp, ok := ev.(*signal.TrackPublished); ok && tp.ParticipantID == agent.ID() {
			info = &tp.Track
		}
	}
	if info == nil || info.Source != signal.SourceTranslation || info.TranslationOf != ana.ID() || info.Lang != "es" {
		t.Errorf("the translation is announced as %+v, want source translation of Ana in es", info)
	}

	// Bo wants no translation now: Ana's own voice again, no Spanish.
	if err := bo.Send(ctx, &signal.Languages{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bo hears Ana again", func() bool { return heardBy["Bo"].flowing(ana.ID(), "voice") })
	eventually(t, "Bo no longer gets the Spanish", func() bool { return !heardBy["Bo"].flowing(agent.ID(), "ana-es") })
}

func drainEvents(p *peer) []signal.Message {
	var out []signal.Message
	for {
		select {
		case m := <-p.events:
			out = append(out, m)
		default:
			return out
		}
	}
}

// An agent finds the rooms that want translation in the SFU's listing;
// nobody else may read it, since it says who speaks what where.
func TestAgentRoomListing(t *testing.T) {
	netns.Require(t)
	secret := []byte("listing-test-secret")
	e := start(t, func(c *server.Config) { c.JWTSecret = secret })
	defer e.close()
	list := func(token string) (int, signal.AgentRooms) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.hs.URL+signal.AgentRoomsPath, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body signal.AgentRooms
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, body
	}
	everyRoom, _ := auth.SignAgent(secret, auth.AnyRoom, "translator", "Translator", time.Minute)
	oneRoom, _ := auth.SignAgent(secret, "babel", "translator", "Translator", time.Minute)
	person, _ := auth.Sign(secret, auth.AnyRoom, "ana", "Ana", time.Minute)
	forged, _ := auth.SignAgent([]byte("another-secret"), auth.AnyRoom, "translator", "Translator", time.Minute)
	for _, c := range []struct {
		name, token string
		want        int
	}{{"no token", "", http.StatusUnauthorized}, {"a person's token", person, http.StatusForbidden},
		{"an agent token for one room", oneRoom, http.StatusUnauthorized}, {"a token signed with another secret", forged, http.StatusUnauthorized}} {
		if code, _ := list(c.token); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}

	ana, bo, cy, agent := e.raw(t), e.raw(t), e.raw(t), e.raw(t)
	defer ana.close()
	defer bo.close()
	defer cy.close()
	defer agent.close()
	ana.send(`{"type":"join","v":1,"room":"babel","name":"Ana","language":"en"}`)
	ana.expect(t, signal.TypeJoined, nil)
	bo.send(`{"type":"join","v":1,"room":"babel","name":"Bo","language":"es","translateTo":"es"}`)
	bo.expect(t, signal.TypeJoined, nil)
	// Cy wants English in a room where only Cy is: nothing to translate.
	cy.send(`{"type":"join","v":1,"room":"alone","name":"Cy","language":"de","translateTo":"en"}`)
	cy.expect(t, signal.TypeJoined, nil)
	if code, l := list(everyRoom); code != http.StatusOK || len(l.Rooms) != 1 || l.Rooms[0].Room != "babel" ||
		!slices.Equal(l.Rooms[0].Wanted, []string{"es"}) || l.Rooms[0].Agents != 0 {
		t.Fatalf("%d %+v, want babel wanting es, no agent", code, l)
	}
	agent.send(`{"type":"join","v":1,"room":"babel","token":"` + oneRoom + `"}`)
	agent.expect(t, signal.TypeJoined, nil)
	if _, l := list(everyRoom); len(l.Rooms) != 1 || l.Rooms[0].Agents != 1 {
		t.Fatalf("%+v, want babel with its agent", l)
	}
	// Bo no longer wants Spanish: babel drops off the list.
	bo.send(`{"type":"languages","language":"es"}`)
	agent.expect(t, signal.TypeLanguages, nil)
	if _, l := list(everyRoom); len(l.Rooms) != 0 {
		t.Fatalf("%+v, want no room", l)
	}
}
