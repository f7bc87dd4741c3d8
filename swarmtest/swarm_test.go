package swarmtest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/jbcalling/platform/internal/demopage"
	"github.com/jbcalling/platform/internal/enginetest"
	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/jbcalling/platform/smoke"
	"github.com/jbcalling/platform/stacks"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// images are the images this repository builds for the proof.
type images struct{ backend, traefik, sfu, agent string }

// prebuilt hands the program the SFU and agent images built here.
func (im images) prebuilt() map[string]pulumi.StringInput {
	return map[string]pulumi.StringInput{"sfu": pulumi.String(im.sfu), "agent": pulumi.String(im.agent)}
}

// buildImages builds the stand-in backend, Traefik (from tools/traefik,
// binary cached across runs) and the SFU (sfu/Dockerfile around a static
// binary), all FROM scratch, and the translation agent (agent/Dockerfile
// on a Debian base made here by debootstrap, its packages from Debian's
// mirror): nothing is pulled from a registry.
func buildImages(t *testing.T, c *Cluster) images {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	root := pulumitest.RepoRoot(t)
	var im images
	bin, err := GoBuild(ctx, root, "./swarmtest/backend")
	if err != nil {
		t.Fatal(err)
	}
	// Root in the container: stand-ins keep the declared target ports, some below 1024.
	if im.backend, err = c.E.ScratchImage(ctx, "platform-swarmtest/backend:test", "/backend", "0", bin); err != nil {
		t.Fatal(err)
	}

	cache := os.Getenv("PLATFORM_TRAEFIK_CACHE")
	if cache == "" {
		cache = "/var/tmp"
	}
	t.Logf("Traefik %s: binary cached under %s (the first build takes minutes)", TraefikVersion, cache)
	path, err := TraefikBinary(ctx, root, cache)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Where the official image has it, so the declared health check
	// (`traefik healthcheck --ping`) finds it on PATH. Root: Traefik reads
	// the engine's socket, as with the official image.
	if im.traefik, err = c.E.ScratchImage(ctx, "platform-swarmtest/traefik:"+TraefikVersion, "/usr/local/bin/traefik", "0", tb); err != nil {
		t.Fatal(err)
	}

	sb, err := GoBuild(ctx, root, "./sfu/cmd/sfu")
	if err != nil {
		t.Fatal(err)
	}
	// The context the program's own build uses (stacks/sfu-image.sh): only
	// the static binary, named sfu, with sfu/Dockerfile.
	df, err := os.ReadFile(filepath.Join(root, "sfu", "Dockerfile"))
	if err != nil {
		t.Fatalf("the SFU image: %v", err)
	}
	if im.sfu, err = c.E.BuildImage(ctx, "platform-swarmtest/sfu:test", map[string]File{
		"Dockerfile": {Data: df}, "sfu": {Data: sb, Mode: 0o755},
	}); err != nil {
		t.Fatal(err)
	}
	if im.sfu == "" {
		t.Fatal("the SFU image build returned no image ID")
	}

	// The agent links libopus and pocketsphinx: built here (Debian 12, as
	// the image), as stacks/agent-image.sh builds it.
	ab, err := GoBuild(ctx, root, "./agent/cmd/agent", "CGO_ENABLED=1")
	if err != nil {
		t.Fatal(err)
	}
	adf, err := os.ReadFile(filepath.Join(root, "agent", "Dockerfile"))
	if err != nil {
		t.Fatalf("the agent image: %v", err)
	}
	if _, err := c.E.DebianBase(ctx); err != nil {
		t.Fatal(err)
	}
	if im.agent, err = c.E.BuildImageWith(ctx, "platform-swarmtest/agent:test", map[string]File{
		"Dockerfile": {Data: adf}, "agent": {Data: ab, Mode: 0o755},
	}, map[string]string{"BASE": "platform-swarmtest/debian:" + DebianRelease}); err != nil {
		t.Fatal(err)
	}
	return im
}

func decodeB64(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("secret data is not base64: %v", err)
	}
	return string(b)
}

// TestLocalSwarm deploys the service stack the Pulumi program declares for
// testdata/Pulumi.local.yaml on this machine's Docker engine, as a
// single-node swarm, and checks it the way a user would.
func TestLocalSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the local Swarm proof (needs a Docker engine and several minutes)")
	}
	ls := loadLocalStack(t)
	c := Open(t)
	im := buildImages(t, c)
	ca := newTestCA(t)
	// The in-process pion clients reach the SFU's host-mode ports on
	// loopback. When headless Chromium can run in a network namespace of
	// the test's own, the SFU also announces the host end of that
	// namespace's veth pair, where the browser reaches the same ports (the
	// SFU announces every address of its --public-ip list; each client can
	// reach only its own).
	mediaIPs, noBrowser := "127.0.0.1", ""
	chromium, err := demopage.Chromium()
	if err != nil {
		noBrowser = err.Error()
	} else if err := setupBrowserNetns(t); err != nil {
		noBrowser = "cannot create the browser's network namespace (Chromium must not see the host's interfaces; run as root): " + err.Error()
	} else {
		mediaIPs += "," + browserHostIP
	}
	info, err := c.E.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ls = standIn(t, ls, im, info.NCPU)
	m := recordStackAt(t, ls, ca, im, mediaIPs)
	d, err := Declarations(m)
	if err != nil {
		t.Fatalf("translating the program's docker resources: %v", err)
	}
	if len(d.Services) != len(ls.Stack.Services) {
		t.Fatalf("the program registered %d services, the model has %d", len(d.Services), len(ls.Stack.Services))
	}

	// The one local node plays every declared node of the test config:
	// it carries their labels, as the bootstrap would set them.
	labels := map[string]string{}
	for _, n := range ls.Cluster.Nodes {
		for k, v := range ls.Cluster.SwarmLabels(n) {
			labels[k] = v
		}
	}
	c.SetNodeLabels(t, labels)

	dep := c.Deploy(t, d, instrument(t, ls, im))
	c.WaitAll(t, dep, 4*time.Minute)
	apex := ls.Cluster.Hostname("")
	httpClient := localClient(nil)

	t.Run("overlay networks carry the declared MTU", func(t *testing.T) {
		for _, n := range ls.Stack.Networks {
			name := ls.Stack.FullName(n.Name)
			id, ok := dep.Networks[name]
			if !ok {
				t.Errorf("network %s was not declared by the program (have %v)", name, sortedNames(dep.Networks))
				continue
			}
			info, err := c.E.Network(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			want := strconv.Itoa(ls.Cluster.MTU)
			if info.Driver != "overlay" || info.Scope != "swarm" || info.Options["com.docker.network.driver.mtu"] != want {
				t.Errorf("network %s: driver %s scope %s mtu option %q, want overlay/swarm/%s",
					name, info.Driver, info.Scope, info.Options["com.docker.network.driver.mtu"], want)
			}
		}
	})

	t.Run("Traefik routes every declared host to its service", func(t *testing.T) {
		routed := 0
		for _, s := range ls.Stack.Services {
			for _, r := range s.Routes {
				if r.Internal != "" {
					continue
				}
				path := "/"
				if len(r.PathPrefixes) > 0 {
					path = r.PathPrefixes[0] + "/"
				}
				if s.Name == "sfu" {
					path = r.PathPrefixes[0] + "/health" // stripped to the SFU's /health
				}
				for _, host := range r.Hosts {
					url := "https://" + host + path
					// Until Traefik has seen a service's task, a shorter
					// route (the frontend's on the apex) answers for its
					// path: wait for the declared service, not any 200.
					var problem string
					for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
						problem = routeProblem(t, httpClient, url, s.Name, ls.Stack.FullName(s.Name))
						if problem == "" || time.Now().After(deadline) {
							break
						}
					}
					if problem != "" {
						t.Errorf("GET %s via Traefik: %s", url, problem)
						continue
					}
					routed++
				}
			}
		}
		if routed == 0 {
			t.Fatal("the model declares no routes to check")
		}
		// A host no route claims must not reach any service.
		if status, _, _ := get(t, httpClient, "https://nobody."+ls.Cluster.Domain+"/", http.StatusNotFound); status != http.StatusNotFound {
			t.Errorf("unrouted host: status %d, want 404", status)
		}
		// Plain HTTP is redirected to HTTPS, as declared on the web entrypoint.
		if status, _, hdr := get(t, httpClient, "http://"+apex+"/", http.StatusMovedPermanently); status/100 != 3 ||
			!strings.HasPrefix(hdr.Get("Location"), "https://"+apex) {
			t.Errorf("http://%s/: status %d Location %q, want a redirect to https", apex, status, hdr.Get("Location"))
		}
	})

	t.Run("every frontend replica answers through Traefik", func(t *testing.T) {
		want := ls.Config.Replicas["frontend"]
		hc := smoke.HTTPChecker{Client: httpClient}
		got, err := hc.GetEveryReplica(context.Background(), "https://"+apex+"/", want, "X-Swarmtest-Replica")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d requests reached replicas %v", got.Requests, got.Seen)
	})

	sfuName := ls.Stack.FullName("sfu")
	t.Run("the SFU is healthy on the node its constraint selects", func(t *testing.T) {
		spec := dep.Specs[sfuName]
		if spec.TaskTemplate.Placement == nil || len(spec.TaskTemplate.Placement.Constraints) == 0 {
			t.Fatalf("the program declares no placement constraint for %s", sfuName)
		}
		node, err := c.E.Node(context.Background(), c.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		nl := node.NodeLabels()
		for _, con := range spec.TaskTemplate.Placement.Constraints {
			k, v, ok := strings.Cut(con, "==")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			label, isLabel := strings.CutPrefix(k, "node.labels.")
			if !ok || !isLabel {
				t.Errorf("constraint %q is not a node label equality (the media node is chosen by label)", con)
				continue
			}
			if nl[label] != v {
				t.Errorf("constraint %q: local node has %s=%q", con, label, nl[label])
			}
		}
		tasks := c.WaitRunning(t, sfuName, dep.Services[sfuName], 1, time.Minute)
		for _, tk := range tasks {
			if tk.NodeID != c.NodeID {
				t.Errorf("SFU task %s runs on node %s, not the labelled node %s", tk.ID, tk.NodeID, c.NodeID)
			}
		}
		// The declared signalling endpoint: wss://webrtc.<domain>:<port>, TLS
		// with the certificate the program put in the SFU's secrets.
		base := fmt.Sprintf("https://%s:%d", ls.Cluster.Hostname("webrtc"), ls.Cluster.SignallingPort)
		h, err := (smoke.HTTPChecker{Client: localClient(ca.Pool)}).SFUHealth(context.Background(), base)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("SFU health over its host-mode TLS port: %+v", h)
		// Its metrics are on the monitoring network only, not on the port
		// Cloudflare proxies.
		resp, err := localClient(ca.Pool).Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s/metrics on the public port: %d, want 404", base, resp.StatusCode)
		}
	})

	t.Run("a call through the containerised SFU", func(t *testing.T) {
		jwtSecret := []byte(secretValue(t, d, "sfu_jwt_secret"))
		token := func(room, name string) (string, error) {
			return auth.Sign(jwtSecret, room, name, name, 5*time.Minute)
		}
		// The SFU's other announced address, the browser's, is not
		// reachable from a loopback socket: ICE must select 127.0.0.1.
		se := loopbackClients(t, ca)
		url := fmt.Sprintf("wss://%s:%d/ws", ls.Cluster.Hostname("webrtc"), ls.Cluster.SignallingPort)
		for _, network := range []string{"udp", "tcp"} {
			t.Run("ICE over "+network, func(t *testing.T) {
				res, err := smoke.MediaCheck{
					URL: url, Network: network, ExpectIP: "127.0.0.1", Token: token,
					SettingEngine: se, Timeout: 45 * time.Second,
				}.Run(context.Background())
				if err != nil {
					t.Fatalf("%v\nthe SFU container's sockets on its ICE port: %s", err, iceSockets(c, dep.Services[sfuName], ls.Config.ICEUDPPort))
				}
				t.Logf("%d packets received; pairs %v", res.Received, res.Pairs)
				if network == "udp" {
					// In its container (the runtime's defaults, uid 65532) the
					// SFU shares its ICE port: reuseport sockets and the
					// steering program were accepted, and the media took the
					// fast receive path and the direct send path.
					m := sfuMetrics(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d", sfuMetricsPort))
					if m["sfu_publishers_fast_total"] < 1 || m["sfu_subscribers_direct_total"] < 1 || m["sfu_fast_received_total"] < 1 {
						t.Fatalf("the containerised SFU's fast paths were not used: %v\nlogs:\n%s", m, c.E.ServiceLogs(context.Background(), dep.Services[sfuName], 40))
					}
				}
			})
		}
	})

	t.Run("the translation agent captions a call through the containerised SFU", func(t *testing.T) {
		// The agent's container reaches the SFU's media where a browser
		// would: the address the SFU announces besides loopback.
		if noBrowser != "" {
			t.Skip("the agent's container reaches the SFU's media only at the browser namespace's address: " + noBrowser)
		}
		enginetest.Require(t, "espeak-ng")
		jwtSecret := []byte(secretValue(t, d, "sfu_jwt_secret"))
		se := loopbackClients(t, ca)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		url := fmt.Sprintf("wss://%s:%d/ws", ls.Cluster.Hostname("webrtc"), ls.Cluster.SignallingPort)
		const room = "swarmtest-babel"
		join := func(name string, opts client.Options) *client.Client {
			tok, err := auth.Sign(jwtSecret, room, name, name, 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			opts.Room, opts.Name, opts.Token, opts.SettingEngine = room, name, tok, se
			c, err := client.Dial(ctx, url, opts)
			if err != nil {
				t.Fatalf("%s joining: %v", name, err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		ana := join("Ana", client.Options{Language: "en"})
		voice, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "voice", "ana")
		if _, err := ana.Publish(ctx, voice); err != nil {
			t.Fatal(err)
		}
		go enginetest.Speak(ctx, t, voice, enginetest.English(t, enginetest.Sentence, 48000))
		captions := make(chan string, 8)
		agents := make(chan string, 8)
		join("Bo", client.Options{TranslateTo: "es",
			OnTrack: func(rt *client.RemoteTrack) {
				go func() {
					for {
						if _, _, err := rt.Track.ReadRTP(); err != nil {
							return
						}
					}
				}()
			},
			OnEvent: func(m signal.Message) {
				switch m := m.(type) {
				case *signal.ParticipantJoined:
					if m.Participant.Agent {
						agents <- m.Participant.ID
					}
				case *signal.Data:
					if m.Topic == signal.TopicCaptions {
						captions <- string(m.Payload)
					}
				}
			}})
		agentName := ls.Stack.FullName("agent")
		select {
		case id := <-agents:
			t.Logf("the agent %s joined the room Bo wants translated", id)
		case <-ctx.Done():
			t.Fatalf("no agent joined within 3 min\nagent logs:\n%s", c.E.ServiceLogs(context.Background(), dep.Services[agentName], 30))
		}
		for {
			select {
			case p := <-captions:
				t.Logf("caption: %s", p)
				if strings.Contains(p, `"final":true`) && strings.Contains(p, "meeting") && strings.Contains(p, "reunión") {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no caption of Ana's sentence with its Spanish within 3 min\nagent logs:\n%s", c.E.ServiceLogs(context.Background(), dep.Services[agentName], 30))
			}
		}
	})

	t.Run("two headless Chromium pages hold a call through the demo page", func(t *testing.T) {
		if noBrowser != "" {
			t.Skip(noBrowser)
		}
		jwtSecret := []byte(secretValue(t, d, "sfu_jwt_secret"))
		const room = "swarmtest-browser"
		// The demo page from both ways in: Ana on the SFU's declared
		// signalling endpoint, https://webrtc.<domain>:<port>/ (signalling
		// on /ws there), Bo through Traefik's same-origin route
		// https://<apex>/sfu/ (signalling on /sfu/ws, routed by the labels
		// the program generates). A join token from ?token=, as the stack
		// admits no anonymous joins.
		direct := fmt.Sprintf("https://%s:%d/", ls.Cluster.Hostname("webrtc"), ls.Cluster.SignallingPort)
		viaTraefik := fmt.Sprintf("https://%s/sfu/", ls.Cluster.Hostname(""))
		pageURL := func(base, name string) string {
			tok, err := auth.Sign(jwtSecret, room, strings.ToLower(name), name, 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return base + "?room=" + room + "&token=" + tok
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the SFU container's sockets on its ICE port: %s", iceSockets(c, dep.Services[sfuName], ls.Config.ICEUDPPort))
				t.Logf("the SFU's last log lines:\n%s", c.E.ServiceLogs(context.Background(), dep.Services[sfuName], 40))
			}
		})

		ana := newBrowserPage(t, chromium, "Ana")
		bo := newBrowserPage(t, chromium, "Bo")
		anaID := ana.JoinURL(pageURL(direct, "Ana"))
		boID := bo.JoinURL(pageURL(viaTraefik, "Bo"))
		ana.WaitFor("Bo's tile", demopage.Tile(boID)+`?.dataset.name === "Bo"`)
		bo.WaitFor("Ana's tile", demopage.Tile(anaID)+`?.dataset.name === "Ana"`)
		ana.Receives(boID)
		bo.Receives(anaID)
		// The media flows over the SFU's host-mode ports at the address it
		// announces for the browser (the program's external IP of the media
		// node).
		for _, p := range []*demopage.Page{ana, bo} {
			pairs := p.SelectedPairs()
			for _, role := range []string{"publisher", "subscriber"} {
				if got := pairs[role]; got.Remote != browserHostIP {
					t.Errorf("%s's %s connection reached the SFU at %q (%s), want the announced %s", p.Name, role, got.Remote, got.Protocol, browserHostIP)
				} else {
					t.Logf("%s's %s: ICE over %s to %s", p.Name, role, got.Protocol, got.Remote)
				}
			}
		}

		bo.Click(`#leave`)
		ana.WaitFor("Bo's tile to go away", `!`+demopage.Tile(boID))
		bo.WaitFor("Bo back at the join form", `!document.querySelector("#join").hidden && document.querySelectorAll("#tiles .tile").length === 0`)
	})

	t.Run("an unsatisfiable constraint is rejected first and stays pending", func(t *testing.T) {
		const con = "node.labels.instance == nowhere"
		// The validator rejects the model with that constraint...
		bad := *ls.Stack
		bad.Services = slices.Clone(ls.Stack.Services)
		var victim *stacks.Service
		for i := range bad.Services {
			if bad.Services[i].Name == "grafana" {
				victim = &bad.Services[i]
			}
		}
		if victim == nil {
			t.Fatal("the model has no grafana service to misplace")
		}
		victim.Constraints = []string{con}
		err := stacks.Validate(ls.Topology, &bad)
		if err == nil {
			t.Fatal("stacks.Validate accepted a service no node can run")
		}
		wantMsg := `service grafana: no declared node satisfies constraints [` + con + `]`
		if !strings.Contains(err.Error(), wantMsg) {
			t.Fatalf("validator message %q does not contain %q", err, wantMsg)
		}
		var ve *stacks.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("validator error is %T, want *stacks.ValidationError", err)
		}

		// ...and the engine, given the program's own grafana spec with that
		// constraint, never schedules it.
		spec := dep.Specs[ls.Stack.FullName("grafana")]
		spec.Name += "_unplaceable"
		spec.Labels = map[string]string{} // no Traefik router clashing with the real grafana
		spec.EndpointSpec = nil
		tt := spec.TaskTemplate
		pl := *tt.Placement
		pl.Constraints = []string{con}
		tt.Placement = &pl
		spec.TaskTemplate = tt
		id := c.CreateService(t, spec)
		var last []Task
		for i := 0; i < 10; i++ { // stays pending across ten polls
			time.Sleep(time.Second)
			ts, err := c.E.Tasks(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			last = ts
			for _, tk := range ts {
				if tk.Status.State != "pending" {
					t.Fatalf("unplaceable task left pending: %s", DescribeTasks(ts))
				}
			}
		}
		if len(last) == 0 {
			t.Fatal("the engine created no task for the unplaceable service")
		}
		if msg := last[0].Status.Err; !strings.Contains(msg, "no suitable node") {
			t.Errorf("pending task's reason %q does not say no node is suitable", msg)
		}
	})
}

// iceSockets lists the addresses the SFU container's sockets bind on port
// (from its network namespace's /proc tables), to tell a failed call's
// cause: per-address sockets answer from an address the host-mode port
// mapping does not expect.
func iceSockets(c *Cluster, serviceID string, port int) string {
	ctx := context.Background()
	ts, err := c.E.Tasks(ctx, serviceID)
	if err != nil || len(ts) == 0 {
		return fmt.Sprintf("(no task: %v)", err)
	}
	var out []string
	for _, tk := range ts {
		if tk.Status.State != "running" {
			continue
		}
		pid, err := c.E.ContainerPID(ctx, tk.Status.ContainerStatus.ContainerID)
		if err != nil {
			return err.Error()
		}
		for _, proto := range []string{"udp", "tcp", "udp6", "tcp6"} {
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
			if err != nil {
				return err.Error()
			}
			for _, line := range strings.Split(string(raw), "\n")[1:] {
				f := strings.Fields(line)
				if len(f) < 4 {
					continue
				}
				addr, p, ok := strings.Cut(f[1], ":")
				if n, _ := strconv.ParseUint(p, 16, 32); !ok || int(n) != port {
					continue
				}
				if strings.HasPrefix(proto, "tcp") && f[3] != "0A" { // listening sockets only
					continue
				}
				b, _ := hex.DecodeString(addr)
				switch {
				case len(b) == 4:
					out = append(out, fmt.Sprintf("%s %d.%d.%d.%d:%d", proto, b[3], b[2], b[1], b[0], port))
				case strings.Trim(addr, "0") == "":
					out = append(out, fmt.Sprintf("%s [::]:%d", proto, port))
				default:
					out = append(out, fmt.Sprintf("%s %s:%d", proto, addr, port))
				}
			}
		}
	}
	return strings.Join(out, ", ")
}

// get requests url through client, retrying until status want or 60 s
// (Traefik applies provider changes asynchronously); it returns the last
// status, body and header.
// routeProblem GETs url and says what is wrong with the answer for the
// service name (full name full), or "" if it came from that service.
func routeProblem(t *testing.T, client *http.Client, url, name, full string) string {
	status, body, hdr := get(t, client, url, http.StatusOK)
	if status != http.StatusOK {
		return fmt.Sprintf("status %d, want 200 (body %.200s)", status, body)
	}
	var doc map[string]any
	_ = json.Unmarshal(body, &doc)
	if name == "sfu" {
		if doc["status"] == nil {
			return fmt.Sprintf("not the SFU's /health document: %.200s", body)
		}
		return ""
	}
	if got := doc["service"]; got != full {
		return fmt.Sprintf("reached service %v, want %s", got, full)
	}
	if hdr.Get("X-Swarmtest-Replica") == "" {
		return "no replica header from the stand-in"
	}
	return ""
}

func get(t *testing.T, client *http.Client, url string, want int) (int, []byte, http.Header) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var status int
		var body []byte
		var hdr http.Header
		resp, err := client.Get(url)
		if err == nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			status, hdr = resp.StatusCode, resp.Header
			if status == want {
				return status, body, hdr
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Logf("GET %s: %v", url, err)
			}
			return status, body, hdr
		}
		time.Sleep(time.Second)
	}
}

// sfuMetricsPort publishes the SFU's metrics listener on this host (see
// standIns); the declared stack publishes it nowhere.
const sfuMetricsPort = 19090

// sfuMetrics reads the SFU's fast-path counters from its /metrics.
func sfuMetrics(t *testing.T, client *http.Client, base string) map[string]float64 {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %v", base, resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "sfu_") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// loopbackClients readies Go clients of the containerised SFU for the rest
// of t: coder/websocket dials with http.DefaultClient, pointed at loopback
// with the test CA, and pion stays on loopback (no candidate on the host's
// other interfaces, and pion leaves loopback out unless told).
func loopbackClients(t *testing.T, ca *testCA) *webrtc.SettingEngine {
	prev := http.DefaultClient
	http.DefaultClient = localClient(ca.Pool)
	t.Cleanup(func() { http.DefaultClient = prev })
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	return &se
}
