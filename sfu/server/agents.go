package server

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/signal"
)

// serveAgentRooms answers agents only: an agent token for every room
// ("room": "*") as a bearer token. Who speaks what is the participants'
// business; nobody else learns which rooms exist.
func (s *Server) serveAgentRooms(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "an agent token for every room is required as a bearer token", http.StatusUnauthorized)
		return
	}
	id, err := s.verifier.Verify(token, auth.AnyRoom)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if !id.Agent {
		http.Error(w, "the token is not an agent's", http.StatusForbidden)
		return
	}
	body := signal.AgentRooms{Rooms: s.rooms.Needs()}
	if body.Rooms == nil {
		body.Rooms = []signal.RoomNeed{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(body)
}
