package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Reports written with --json print as the benchmarks page's table: the
// fixtures are three of run L's reports, and the first two rows of
// report-table.md are run L's rows as docs/benchmarks.md has them (made
// from the same JSON by hand, before this code existed).
func TestWriteMarkdown(t *testing.T) {
	var reps []*Report
	for _, name := range []string{"report-1x100.json", "report-10x4.json", "report-25x10-video.json"} {
		rep, err := ReadReport(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, reps); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "report-table.md"))
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestLabel(t *testing.T) {
	tests := []struct {
		c       ConfigSummary
		machine string
		want    string
	}{
		{ConfigSummary{Rooms: 1, Publishers: 2, Audio: true, VideoBitrate: 1_500_000}, "linux/amd64, 2 CPUs", "1 room × 2 publishers"},
		{ConfigSummary{Rooms: 1, Publishers: 1, Subscribers: 50, Audio: true, VideoBitrate: 1_500_000}, "linux/amd64, 2 CPUs", "1 publisher × 50 subscribers"},
		{ConfigSummary{Rooms: 10, Publishers: 4, Audio: true, VideoBitrate: 1_500_000}, "linux/amd64, 1 CPUs", "10 rooms × 4 publishers (load tool on 1 CPU)"},
		{ConfigSummary{Rooms: 1, Publishers: 1, Subscribers: 300, VideoBitrate: 3_000_000}, "linux/amd64, 2 CPUs", "1 publisher × 300 subscribers (video only, video 3.00 Mbit/s)"},
	}
	for _, tt := range tests {
		rep := &Report{Config: tt.c, Machine: tt.machine}
		if got := rep.Label(); got != tt.want {
			t.Errorf("Label() = %q, want %q", got, tt.want)
		}
	}
}

func TestReadReportRejectsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"garbage.json": "not json", "other.json": `{"rooms": 3}`} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadReport(p); err == nil || !strings.Contains(err.Error(), "not an sfuload report") {
			t.Errorf("%s: %v, want an error naming it not a report", name, err)
		}
	}
}
