package load

import (
	"strings"
	"testing"
)

// A run without the floor must not print a floor of 0 µs and claim the
// SFU adds its whole cost.
func TestTableFloor(t *testing.T) {
	tests := []struct {
		name        string
		floor, cpu  float64
		want, never string
	}{
		{"measured", 2.5, 3.5, "2.50 µs CPU per datagram", "not measured"},
		{"skipped", 0, 3.5, "not measured", "the SFU adds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Report{FloorMicros: tt.floor, CPUPerForwardedMicros: tt.cpu}
			var b strings.Builder
			if err := rep.WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			var line string
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(l, "fan-out floor") {
					line = l
				}
			}
			if !strings.Contains(line, tt.want) || strings.Contains(line, tt.never) {
				t.Errorf("floor line %q: want %q, not %q", line, tt.want, tt.never)
			}
		})
	}
}
