package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsAreFreeDistinctAndBelowTheEphemeralRange: every port handed out
// can be listened on, none twice, all outside the range the kernel hands
// out to port-0 listeners, and a port some listener holds is skipped.
func TestPortsAreFreeDistinctAndBelowTheEphemeralRange(t *testing.T) {
	held, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(held))
	if err != nil {
		t.Fatalf("listen on the handed-out port %d: %v", held, err)
	}
	defer l.Close()
	// The next port to try is one a listener holds: it is skipped.
	ports.Lock()
	ports.next = held
	ports.Unlock()
	if p, err := Port(); err != nil || p == held {
		t.Fatalf("Port() = %d, %v with %d held; want another port", p, err, held)
	}
	seen := map[int]bool{held: true}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < portLow || p >= portHigh {
			t.Fatalf("port %d is outside [%d, %d)", p, portLow, portHigh)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		c, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d was handed out but cannot be listened on: %v", p, err)
		}
		c.Close()
	}
	addr, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(addr)
	if n, _ := strconv.Atoi(port); err != nil || host != "127.0.0.1" || n < portLow || n >= portHigh {
		t.Fatalf("Addr() = %q; want 127.0.0.1:<port in [%d, %d)>", addr, portLow, portHigh)
	}
}
