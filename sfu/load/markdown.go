package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// machineCPUs ends Report.Machine: the load tool's CPUs (one when pinned).
const machineCPUs = ", %d CPUs"

// ReadReport reads a report written with sfuload --json.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: not an sfuload report: %w", path, err)
	}
	if rep.Config.Rooms == 0 {
		return nil, fmt.Errorf("%s: not an sfuload report: no rooms in its config", path)
	}
	return &rep, nil
}

// markdownHeader is docs/benchmarks.md's results table.
const markdownHeader = `| load | forwarded pkt/s | Mbit/s | loss | NACKs | SFU CPU cores | µs CPU/fwd pkt | UDP send µs | ratio | floor µs (ratio) | latency p50/p99 ms | added by SFU p50/p99 ms | join→1st keyframe p50/p95/max | 1 new sub → keyframe p50/max | RSS/participant MiB | load avg |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
`

// WriteMarkdown prints reps as the results table of docs/benchmarks.md,
// one row per report, so a re-run pastes in as it is.
func WriteMarkdown(w io.Writer, reps []*Report) error {
	var b strings.Builder
	b.WriteString(markdownHeader)
	for _, r := range reps {
		floor := "–"
		if r.FloorMicros > 0 {
			floor = fmt.Sprintf("%.1f (%.2f)", r.FloorMicros, r.FloorRatio)
		}
		crowd := "–"
		if k := r.JoinToFirstKeyframe; k.N > 0 {
			crowd = fmt.Sprintf("%.0f/%.0f/%.0f", k.P50, k.P95, k.Max)
		}
		probe := "–"
		if k := r.ProbeJoinToFirstKeyframe; k.N > 0 {
			probe = fmt.Sprintf("%.0f/%.0f", k.P50, k.Max)
		}
		loadAvg := "?"
		if f := strings.Fields(r.LoadAvgStart); len(f) > 0 {
			loadAvg = f[0]
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.3f%% | %.0f | %.3f | %.2f | %.2f | **%.2f** | %s | %.2f/%.1f | **%.2f/%.2f** | %s | %s | %.2f | %s |\n",
			r.Label(), r.ForwardedPacketsPerSec, r.ForwardedBytesPerSec*8/1e6, r.Loss*100, r.NACKs,
			r.SFUCPUCores, r.CPUPerForwardedMicros, r.UDPSendMicros, r.ForwardingRatio, floor,
			r.Latency.P50, r.Latency.P99, r.AddedLatencyP50, r.AddedLatencyP99, crowd, probe,
			r.SFURSSPerParticipant/(1<<20), loadAvg)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Label names the load as the benchmarks page does: "1 publisher × 100
// subscribers", "10 rooms × 4 publishers", with what differs from the
// defaults (no audio, another bitrate).
func (rep *Report) Label() string {
	c := rep.Config
	plural := func(n int, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	var l string
	switch {
	case c.Subscribers == 0:
		l = plural(c.Rooms, "room") + " × " + plural(c.Publishers, "publisher")
	case c.Rooms == 1:
		l = plural(c.Publishers, "publisher") + " × " + plural(c.Subscribers, "subscriber")
	default:
		l = fmt.Sprintf("%s × (%s + %s)", plural(c.Rooms, "room"), plural(c.Publishers, "publisher"), plural(c.Subscribers, "subscriber"))
	}
	var notes []string
	if !c.Audio {
		notes = append(notes, "video only")
	}
	if d := Defaults(); c.VideoBitrate != d.VideoBitrate {
		notes = append(notes, fmt.Sprintf("video %.2f Mbit/s", float64(c.VideoBitrate)/1e6))
	}
	if strings.HasSuffix(rep.Machine, fmt.Sprintf(machineCPUs, 1)) {
		notes = append(notes, "load tool on 1 CPU")
	}
	if len(notes) > 0 {
		l += " (" + strings.Join(notes, ", ") + ")"
	}
	return l
}
