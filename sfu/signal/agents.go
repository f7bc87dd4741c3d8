package signal

// AgentRoomsPath is where the SFU lists, for translation agents, the rooms
// that want one (GET, with an agent token for every room as a bearer
// token).
const AgentRoomsPath = "/agent/rooms"

// AgentRooms is the body of the agent listing.
type AgentRooms struct {
	Rooms []RoomNeed `json:"rooms"`
}

// RoomNeed is a room where someone wants another participant's speech in
// a language that participant does not speak.
type RoomNeed struct {
	Room string `json:"room"`
	// Wanted are the languages asked for, sorted.
	Wanted []string `json:"wanted"`
	// Agents in the room now: an agent that finds one already there
	// leaves the room to it.
	Agents int `json:"agents"`
}
