package swarmtest

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/demopage"
)

// Headless Chromium runs in a network namespace of the test's own: WebRTC
// gathers candidates on every interface it sees, and it must see none of
// the host's. The namespace holds lo and one end of a veth pair; the host
// end carries browserHostIP, where the SFU's and Traefik's host-mode ports
// answer (they listen on every host address). The namespace has no default
// route: the browser can reach browserHostIP and nothing else.
const (
	browserNS     = "swtchrome"
	browserVethH  = "swc0" // host side
	browserVethNS = "swc1" // namespace side
	browserHostIP = "10.211.0.1"
	browserNSIP   = "10.211.0.2"
)

// setupBrowserNetns creates the browser's namespace and veth pair, removed
// at cleanup (also on failure). Leftovers of a killed run, which carry the
// same names, are removed first.
func setupBrowserNetns(t testing.TB) error {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2's ip command is not installed: %v", err)
	}
	remove := func() {
		_ = exec.Command("ip", "netns", "del", browserNS).Run()
		_ = exec.Command("ip", "link", "del", browserVethH).Run() // gone with the namespace, unless a process keeps it
	}
	remove()
	steps := [][]string{
		{"netns", "add", browserNS},
		{"link", "add", browserVethH, "type", "veth", "peer", "name", browserVethNS, "netns", browserNS},
		{"addr", "add", browserHostIP + "/24", "dev", browserVethH},
		{"link", "set", browserVethH, "up"},
		{"-n", browserNS, "link", "set", "lo", "up"},
		{"-n", browserNS, "addr", "add", browserNSIP + "/24", "dev", browserVethNS},
		{"-n", browserNS, "link", "set", browserVethNS, "up"},
	}
	for i, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			if i > 0 {
				remove()
			}
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		if i == 0 {
			t.Cleanup(remove)
		}
	}
	return nil
}

// browserWait bounds every wait: two browsers, the SFU and the whole stack
// share this machine's cores.
const browserWait = 90 * time.Second

// newBrowserPage starts one participant's Chromium in the browser
// namespace, where every host name is this machine (a user whose DNS points
// the stack's names at the nodes) and the test CA's certificates (standing
// in for the Cloudflare Origin CA) are accepted.
func newBrowserPage(t *testing.T, b demopage.Browser, name string) *demopage.Page {
	return demopage.New(t, b, name, demopage.Options{
		Netns: browserNS,
		Flags: map[string]any{
			"host-resolver-rules":       "MAP * " + browserHostIP,
			"ignore-certificate-errors": true,
		},
		Wait: browserWait,
	})
}
