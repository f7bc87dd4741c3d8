//go:build race

package racecheck

// Enabled reports whether the race detector is built in.
const Enabled = true
