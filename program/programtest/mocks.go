// Package programtest holds what tests of the whole program share: mocks
// that answer like the real nodes and providers would.
package programtest

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/internal/pulumitest"
)

// Mocks answers like real nodes: init prints "<cluster id> <node id>", a
// join prints the node ID, the token command a token.
func Mocks() *pulumitest.Mocks {
	m := pulumitest.NewMocks()
	m.OnResource("command:remote:Command", func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		var stdout string
		switch {
		case args.Name == "swarm-init":
			stdout = "clusterid0123456789abcdef managerid0123456789abcd\n"
		case strings.HasPrefix(args.Name, "swarm-join-"):
			stdout = "nodeid" + strings.TrimPrefix(args.Name, "swarm-join-") + "\n"
		case args.Name == "swarm-worker-token":
			stdout = "SWMTKN-1-mock-token\n"
		}
		outs["stdout"] = resource.NewStringProperty(stdout)
		return outs, nil
	})
	// The recorder hands out addresses and instance IDs in registration
	// order, which varies between runs (registration waits on outputs).
	// Derive them from the resource name instead, so two runs of the same
	// config can be compared.
	m.OnResource("gcp:compute/address:Address", func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		if a, ok := args.Inputs["addressType"]; ok && a.IsString() && a.StringValue() == "EXTERNAL" {
			outs["address"] = resource.NewStringProperty(fmt.Sprintf("203.0.113.%d", 1+hash(args.Name)%250))
		}
		return outs, nil
	})
	m.OnResource("gcp:compute/instance:Instance", func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		outs["instanceId"] = resource.NewStringProperty(fmt.Sprint(hash(args.Name)))
		return outs, nil
	})
	// The stack's SFU image build (a local command) prints the pushed digest.
	m.OnResource("command:local:Command", func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		if env, ok := args.Inputs["environment"]; ok && env.IsObject() {
			if image, ok := env.ObjectValue()["IMAGE"]; ok && image.IsString() {
				repo, _, _ := strings.Cut(image.StringValue(), ":")
				outs["stdout"] = resource.NewStringProperty(repo + "@sha256:" + strings.Repeat("ab", 32) + "\n")
			}
		}
		return outs, nil
	})
	return m
}

func hash(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}
