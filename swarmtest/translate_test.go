package swarmtest

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// declareSample is a small pulumi-docker program using every field the
// translator carries over; it runs under the recording mocks exactly as the
// stack program does.
func declareSample(ctx *pulumi.Context) error {
	net, err := docker.NewNetwork(ctx, "backend", &docker.NetworkArgs{
		Name: pulumi.String("t_backend"), Driver: pulumi.String("overlay"), Attachable: pulumi.Bool(true),
		Options: pulumi.StringMap{"com.docker.network.driver.mtu": pulumi.String("1460")},
		Labels:  docker.NetworkLabelArray{docker.NetworkLabelArgs{Label: pulumi.String("tier"), Value: pulumi.String("app")}},
	})
	if err != nil {
		return err
	}
	sec, err := docker.NewSecret(ctx, "jwt", &docker.SecretArgs{
		Name: pulumi.String("t_jwt"),
		Data: pulumi.ToSecret(pulumi.String(base64.StdEncoding.EncodeToString([]byte("s3cret")))).(pulumi.StringOutput),
	})
	if err != nil {
		return err
	}
	_, err = docker.NewService(ctx, "api", &docker.ServiceArgs{
		Name:   pulumi.String("t_api"),
		Labels: docker.ServiceLabelArray{docker.ServiceLabelArgs{Label: pulumi.String("traefik.enable"), Value: pulumi.String("true")}},
		Mode:   docker.ServiceModeArgs{Replicated: docker.ServiceModeReplicatedArgs{Replicas: pulumi.Int(3)}},
		TaskSpec: docker.ServiceTaskSpecArgs{
			ContainerSpec: docker.ServiceTaskSpecContainerSpecArgs{
				Image:  pulumi.String("example/api:1.2"),
				Args:   pulumi.StringArray{pulumi.String("--listen=:8000")},
				Env:    pulumi.StringMap{"B": pulumi.String("2"), "A": pulumi.String("1")},
				Labels: docker.ServiceTaskSpecContainerSpecLabelArray{docker.ServiceTaskSpecContainerSpecLabelArgs{Label: pulumi.String("c"), Value: pulumi.String("d")}},
				Healthcheck: docker.ServiceTaskSpecContainerSpecHealthcheckArgs{
					Tests:    pulumi.StringArray{pulumi.String("CMD"), pulumi.String("/api"), pulumi.String("-health")},
					Interval: pulumi.String("10s"), Timeout: pulumi.String("3s"), Retries: pulumi.Int(3), StartPeriod: pulumi.String("1m"),
				},
				Mounts: docker.ServiceTaskSpecContainerSpecMountArray{docker.ServiceTaskSpecContainerSpecMountArgs{
					Type: pulumi.String("bind"), Source: pulumi.String("/var/run/docker.sock"), Target: pulumi.String("/var/run/docker.sock"), ReadOnly: pulumi.Bool(true),
				}},
				Secrets: docker.ServiceTaskSpecContainerSpecSecretArray{docker.ServiceTaskSpecContainerSpecSecretArgs{
					SecretId: sec.ID(), SecretName: sec.Name, FileName: pulumi.String("/run/secrets/jwt"), FileMode: pulumi.Int(0o400),
				}},
				StopGracePeriod: pulumi.String("30s"),
			},
			Placement: docker.ServiceTaskSpecPlacementArgs{
				Constraints: pulumi.StringArray{pulumi.String("node.labels.media == true")},
				Prefs:       pulumi.StringArray{pulumi.String("node.labels.zone")},
				MaxReplicas: pulumi.Int(1),
			},
			NetworksAdvanceds: docker.ServiceTaskSpecNetworksAdvancedArray{docker.ServiceTaskSpecNetworksAdvancedArgs{
				Name: net.ID(), Aliases: pulumi.StringArray{pulumi.String("api")},
			}},
			Resources: docker.ServiceTaskSpecResourcesArgs{
				Limits:      docker.ServiceTaskSpecResourcesLimitsArgs{MemoryBytes: pulumi.Int(512 << 20), NanoCpus: pulumi.Int(1e9)},
				Reservation: docker.ServiceTaskSpecResourcesReservationArgs{MemoryBytes: pulumi.Int(256 << 20)},
			},
			RestartPolicy: docker.ServiceTaskSpecRestartPolicyArgs{Condition: pulumi.String("on-failure"), Delay: pulumi.String("5s"), MaxAttempts: pulumi.Int(3)},
		},
		UpdateConfig:   docker.ServiceUpdateConfigArgs{Parallelism: pulumi.Int(1), Order: pulumi.String("start-first"), FailureAction: pulumi.String("rollback"), Delay: pulumi.String("2s")},
		RollbackConfig: docker.ServiceRollbackConfigArgs{Order: pulumi.String("stop-first"), MaxFailureRatio: pulumi.String("0.5")},
		EndpointSpec: docker.ServiceEndpointSpecArgs{Ports: docker.ServiceEndpointSpecPortArray{docker.ServiceEndpointSpecPortArgs{
			TargetPort: pulumi.Int(40000), PublishedPort: pulumi.Int(40000), Protocol: pulumi.String("udp"), PublishMode: pulumi.String("host"),
		}}},
	})
	return err
}

func TestTranslateDeclaredService(t *testing.T) {
	m, err := pulumitest.Run(t, "platform", "swarmtest", nil, declareSample)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Declarations(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Networks) != 1 || len(d.Secrets) != 1 || len(d.Services) != 1 {
		t.Fatalf("declared %d networks, %d secrets, %d services; want 1 each", len(d.Networks), len(d.Secrets), len(d.Services))
	}
	n := d.Networks[0].Spec
	if n.Name != "t_backend" || n.Driver != "overlay" || n.Scope != "swarm" || !n.Attachable ||
		n.Options["com.docker.network.driver.mtu"] != "1460" || n.Labels["tier"] != "app" {
		t.Errorf("network spec: %+v", n)
	}
	if s := d.Secrets[0].Spec; s.Name != "t_jwt" || s.Data != base64.StdEncoding.EncodeToString([]byte("s3cret")) {
		t.Errorf("secret spec: %+v", s)
	}

	spec, err := ServiceFromInputs(d.Services[0].Inputs,
		IDs{d.Networks[0].MockID: "realnet"}, IDs{d.Secrets[0].MockID: "realsec"}, IDs{})
	if err != nil {
		t.Fatal(err)
	}
	c := spec.TaskTemplate.ContainerSpec
	ns := func(s string) int64 { d, _ := parseDur(s); return d }
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", spec.Name, "t_api"},
		{"service labels", spec.Labels, map[string]string{"traefik.enable": "true"}},
		{"container labels", c.Labels, map[string]string{"c": "d"}},
		{"replicas", *spec.Mode.Replicated.Replicas, uint64(3)},
		{"image", c.Image, "example/api:1.2"},
		{"args", c.Args, []string{"--listen=:8000"}},
		{"env sorted", c.Env, []string{"A=1", "B=2"}},
		{"healthcheck", *c.Healthcheck, Healthcheck{Test: []string{"CMD", "/api", "-health"}, Interval: ns("10s"), Timeout: ns("3s"), StartPeriod: ns("1m"), Retries: 3}},
		{"mount", c.Mounts[0].Type + " " + c.Mounts[0].Source + " " + c.Mounts[0].Target, "bind /var/run/docker.sock /var/run/docker.sock"},
		{"mount ro", c.Mounts[0].ReadOnly, true},
		{"secret id", c.Secrets[0].SecretID, "realsec"},
		{"secret name", c.Secrets[0].SecretName, "t_jwt"},
		{"secret file", c.Secrets[0].File.Name + " " + c.Secrets[0].File.UID, "/run/secrets/jwt 0"},
		{"secret mode", c.Secrets[0].File.Mode, uint32(0o400)},
		{"stop grace", *c.StopGracePeriod, ns("30s")},
		{"constraints", spec.TaskTemplate.Placement.Constraints, []string{"node.labels.media == true"}},
		{"spread", spec.TaskTemplate.Placement.Preferences[0].Spread.SpreadDescriptor, "node.labels.zone"},
		{"max replicas", spec.TaskTemplate.Placement.MaxReplicas, uint64(1)},
		{"network", spec.TaskTemplate.Networks, []NetworkAttach{{Target: "realnet", Aliases: []string{"api"}}}},
		{"limits", *spec.TaskTemplate.Resources.Limits, ResourceValues{NanoCPUs: 1e9, MemoryBytes: 512 << 20}},
		{"reservation", *spec.TaskTemplate.Resources.Reservations, ResourceValues{MemoryBytes: 256 << 20}},
		{"restart", spec.TaskTemplate.RestartPolicy.Condition, "on-failure"},
		{"restart delay", *spec.TaskTemplate.RestartPolicy.Delay, ns("5s")},
		{"restart attempts", *spec.TaskTemplate.RestartPolicy.MaxAttempts, uint64(3)},
		{"update", *spec.UpdateConfig, UpdateConfig{Parallelism: 1, Order: "start-first", FailureAction: "rollback", Delay: ns("2s")}},
		{"rollback", *spec.RollbackConfig, UpdateConfig{Parallelism: 1, Order: "stop-first", MaxFailureRatio: 0.5}},
		{"ports", spec.EndpointSpec.Ports, []PortSpec{{Protocol: "udp", TargetPort: 40000, PublishedPort: 40000, PublishMode: "host"}}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.what, c.got, c.want)
		}
	}
}

func TestTranslateRejectsWhatItCannotCarry(t *testing.T) {
	m, err := pulumitest.Run(t, "platform", "swarmtest", nil, declareSample)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Declarations(m)
	if err != nil {
		t.Fatal(err)
	}
	good := d.Services[0].Inputs
	nets, secs := IDs{d.Networks[0].MockID: "n"}, IDs{d.Secrets[0].MockID: "s"}
	cases := []struct {
		name   string
		mutate func(in map[string]any)
		nets   IDs
		want   string
	}{
		{"unknown field", func(in map[string]any) { in["taskSpec"].(map[string]any)["bogus"] = 1 }, nets, `unknown field "bogus"`},
		{"network not declared", func(map[string]any) {}, IDs{}, `network "backend-id" is not one the program declared`},
		{"configs", func(in map[string]any) {
			in["taskSpec"].(map[string]any)["containerSpec"].(map[string]any)["configs"] = []any{map[string]any{"configId": "x", "fileName": "/f"}}
		}, nets, `config "x" is not one the program declared`},
		{"bad duration", func(in map[string]any) {
			in["updateConfig"].(map[string]any)["delay"] = "soon"
		}, nets, "updateConfig: delay"},
		{"no image", func(in map[string]any) {
			in["taskSpec"].(map[string]any)["containerSpec"].(map[string]any)["image"] = ""
		}, nets, "service t_api: no image"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := deepCopy(good).(map[string]any)
			tc.mutate(in)
			_, err := ServiceFromInputs(in, tc.nets, secs, IDs{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

func parseDur(s string) (int64, error) { return dur(&s) }
