package server

import (
	"errors"
	"strings"
	"testing"
)

func TestDefaultRouteInterface(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	cases := []struct {
		name, table, want string
		err               error
	}{
		{"container: default via docker_gwbridge's veth", header +
			"eth1\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"eth1\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n", "eth1", nil},
		{"default listed after other routes", header +
			"v1\t0000CB0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"v0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n", "v0", nil},
		{"a /0 destination with a narrower mask is not the default", header +
			"eth0\t00000000\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n", "", ErrNoDefaultRoute},
		{"no routes", header, "", ErrNoDefaultRoute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := defaultRouteInterface(strings.NewReader(c.table))
			if got != c.want || !errors.Is(err, c.err) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, c.want, c.err)
			}
		})
	}
}
