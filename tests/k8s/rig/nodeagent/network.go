package main

// The pod network of one agent: a Linux bridge holding the gateway address
// (.1 of a /24 the test chose), and per pod a network namespace with one end
// of a veth pair on that bridge. echo-basic listens on all interfaces, so each
// pod needs its own namespace for two pods to share a port; the host reaches
// every pod address through the bridge's connected route, as a node reaches
// its pods.
//
// Everything is done with iproute2 (`ip`), as an operator would by hand, and
// named after the bridge so that a leftover of a killed run is recognisable
// and removable (`cleanup`).

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
)

// network is one agent's bridge and the addresses it hands out.
type network struct {
	bridge  string
	gateway netip.Addr
	prefix  netip.Prefix

	mu    sync.Mutex
	inUse map[netip.Addr]bool
	last  netip.Addr
}

// ip runs `ip args...` and returns its error with iproute2's message.
func ip(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// newNetwork creates the bridge with the first address of cidr (a /24 or
// smaller) after removing whatever a previous run under the same name left.
func newNetwork(bridge, cidr string) (*network, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("--pod-cidr %q: %v", cidr, err)
	}
	prefix = prefix.Masked()
	if !prefix.Addr().Is4() || prefix.Bits() < 24 || prefix.Bits() > 29 {
		return nil, fmt.Errorf("--pod-cidr %q: want an IPv4 prefix from /24 to /29", cidr)
	}
	n := &network{
		bridge:  bridge,
		gateway: prefix.Addr().Next(),
		prefix:  prefix,
		inUse:   map[netip.Addr]bool{},
	}
	cleanup(bridge)
	steps := [][]string{
		{"link", "add", bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", n.gateway, prefix.Bits()), "dev", bridge},
		{"link", "set", bridge, "up"},
	}
	for _, step := range steps {
		if err := ip(step...); err != nil {
			cleanup(bridge)
			return nil, err
		}
	}
	return n, nil
}

// allocate takes the next free pod address after the last one given, as
// real pod networks do (CNI host-local IPAM). Handing out the lowest free
// address reused a deleted pod's address within seconds, while the host's
// ARP entry still named the old pod: connections to the new pod were
// dropped for 15-45 s, which failed whichever conformance test came next.
func (n *network) allocate() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var candidates []netip.Addr
	for a := n.gateway.Next(); n.prefix.Contains(a) && n.prefix.Contains(a.Next()); a = a.Next() {
		candidates = append(candidates, a)
	}
	start := 0
	for i, a := range candidates {
		if a == n.last {
			start = i + 1
		}
	}
	for i := 0; i < len(candidates); i++ {
		a := candidates[(start+i)%len(candidates)]
		if !n.inUse[a] {
			n.inUse[a] = true
			n.last = a
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod network %s is full", n.prefix)
}

func (n *network) release(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.inUse, a)
}

// names are the namespace and host-side veth of the pod at address a. Both
// carry the bridge's name, so they are unique per agent, and the address's
// last octet, so they are unique per pod; interface names fit in 15 bytes
// while the bridge name is at most 10.
func (n *network) names(a netip.Addr) (netns, veth string) {
	last := a.As4()[3]
	return fmt.Sprintf("%s-%d", n.bridge, last), fmt.Sprintf("%sv%d", n.bridge, last)
}

// addPod creates the namespace of address a: eth0 with a, lo up, a default
// route through the bridge (so the pod reaches the host's addresses, e.g. a
// gateway under test).
func (n *network) addPod(a netip.Addr) (netns string, err error) {
	netns, veth := n.names(a)
	steps := [][]string{
		{"netns", "add", netns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns},
		{"link", "set", veth, "master", n.bridge, "up"},
		{"netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_notify=1"},
		{"-n", netns, "addr", "add", fmt.Sprintf("%s/%d", a, n.prefix.Bits()), "dev", "eth0"},
		{"-n", netns, "link", "set", "lo", "up"},
		{"-n", netns, "link", "set", "eth0", "up"},
		{"-n", netns, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, step := range steps {
		if err := ip(step...); err != nil {
			n.removePod(a)
			return "", err
		}
	}
	return netns, nil
}

// removePod deletes the namespace of address a (its veth goes with it) and
// frees the address. Processes still inside must be stopped first.
func (n *network) removePod(a netip.Addr) {
	netns, veth := n.names(a)
	_ = ip("link", "del", veth)
	_ = ip("netns", "del", netns)
	n.release(a)
}

// close removes every namespace of this agent and the bridge.
func (n *network) close() { cleanup(n.bridge) }

// cleanup removes the namespaces named after bridge (killing what still runs
// in them) and the bridge itself. Used at start (a killed run's leftovers)
// and at exit; the test harness does the same when the agent was killed.
func cleanup(bridge string) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], bridge+"-") {
			continue
		}
		killNetns(fields[0])
		_ = ip("netns", "del", fields[0])
	}
	_ = ip("link", "del", bridge)
}

// killNetns SIGKILLs every process inside the named namespace.
func killNetns(netns string) {
	out, _ := exec.Command("ip", "netns", "pids", netns).Output()
	for _, pid := range strings.Fields(string(out)) {
		_ = exec.Command("kill", "-KILL", pid).Run()
	}
}
