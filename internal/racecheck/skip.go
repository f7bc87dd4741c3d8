package racecheck

import "testing"

// SkipAllocs skips an allocation-counting test under the race detector,
// whose instrumentation allocates; the normal run checks the counts.
func SkipAllocs(t testing.TB) {
	t.Helper()
	if Enabled {
		t.Skip("the race detector allocates: allocation counts are checked in the run without -race")
	}
}
