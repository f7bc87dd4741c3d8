package netns

import (
	"net"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// The namespace must hold exactly lo and the veth pair, with Addr on v0:
// anything else would let WebRTC gather candidates on the host's interfaces.
func TestNamespaceHasOnlyPrivateInterfaces(t *testing.T) {
	Require(t)
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, ifc := range ifaces {
		names[ifc.Name] = true
	}
	for _, want := range []string{"lo", "v0", "v1"} {
		if !names[want] {
			t.Errorf("interface %s missing; have %v", want, names)
		}
	}
	if len(names) != 3 {
		t.Errorf("namespace has interfaces %v, want only lo, v0, v1", names)
	}
	v0, err := net.InterfaceByName("v0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := v0.Addrs()
	found := false
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == Addr {
			found = true
		}
	}
	if !found {
		t.Errorf("v0 addresses %v, want %s", addrs, Addr)
	}
}
