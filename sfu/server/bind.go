package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// ICEBindAuto as --ice-bind makes the ICE muxes bind the address of the
// interface that holds the IPv4 default route. In a Swarm task with
// host-mode published ports that is the docker_gwbridge address the
// published ports deliver to; with one socket per container address the
// SFU answers from the wrong one and ICE fails (found by the local Swarm
// proof). On a VM or a laptop it is the primary NIC's address.
const ICEBindAuto = "auto"

// ErrNoDefaultRoute means --ice-bind auto found no IPv4 default route.
var ErrNoDefaultRoute = errors.New("no IPv4 default route")

// defaultRouteIP reads the kernel's routing table (Linux) and returns the
// first IPv4 address of the default route's interface.
func defaultRouteIP() (net.IP, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("reading the routing table: %w", err)
	}
	defer f.Close()
	iface, err := defaultRouteInterface(f)
	if err != nil {
		return nil, err
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("default route interface %s: %w", iface, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, fmt.Errorf("default route interface %s: %w", iface, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("default route interface %s has no IPv4 address", iface)
}

// defaultRouteInterface returns the interface of the first default route
// (destination and mask 0) in /proc/net/route's format.
func defaultRouteInterface(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(f) < 8 || f[0] == "Iface" {
			continue
		}
		if f[1] == "00000000" && f[7] == "00000000" {
			return f[0], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", ErrNoDefaultRoute
}
