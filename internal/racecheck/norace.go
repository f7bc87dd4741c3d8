//go:build !race

// Package racecheck tells tests whether the race detector is built in: its
// instrumentation allocates, so allocation counts are only meaningful
// without it.
package racecheck

// Enabled reports whether the race detector is built in.
const Enabled = false
