package stacks

import (
	"fmt"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The provider (pulumi-docker, from terraform-provider-docker) reads every
// service duration back as Go prints it, with a trailing zero minute or
// second unit cut ("60s" as "1m", "90m" as "1h30m"): a declared value in
// any other form is a diff on every preview after the first `up`, and a
// service update each time. providerDuration gives the form it reads back.
func providerDuration(s string) (string, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a duration", s)
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = out[:len(out)-2]
	}
	if strings.HasSuffix(out, "h0m") {
		out = out[:len(out)-2]
	}
	return out, nil
}

// durations lists a service's declared durations by field, for the
// validator and the deployment.
func (s *Service) durations() map[string]string {
	out := map[string]string{
		"update delay": s.Update.Delay, "update monitor": s.Update.Monitor,
		"rollback delay": s.Rollback.Delay, "rollback monitor": s.Rollback.Monitor,
		"restart delay": s.Restart.Delay, "restart window": s.Restart.Window,
	}
	if s.StopGrace != "" {
		out["stop grace period"] = s.StopGrace
	}
	if h := s.Healthcheck; h != nil {
		out["health check interval"], out["health check timeout"], out["health check start period"] = h.Interval, h.Timeout, h.StartPeriod
	}
	return out
}

// dur is a declared duration in the provider's form (see
// providerDuration); the validator has rejected any that does not parse.
func dur(s string) pulumi.StringInput {
	if s == "" {
		return nil
	}
	out, err := providerDuration(s)
	if err != nil {
		return pulumi.String(s)
	}
	return pulumi.String(out)
}
