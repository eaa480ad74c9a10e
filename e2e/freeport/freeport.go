package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// A port found free by listening on port 0 and closing the listener is
// the kernel's to hand out again: to the next port-0 listener or outbound
// connection of any process (other test packages run at the same time),
// and a child process told to listen on it then fails with "address
// already in use". The ports handed out here come from below the
// kernel's ephemeral range (32768 and up, Linux's default), which the
// kernel never gives out by itself, each checked by listening on it and
// never handed out twice by this process.
const (
	portLow  = 20000
	portHigh = 32000
)

var ports struct {
	sync.Mutex
	next int
}

// Port returns a loopback port that is free now and that nothing but
// the caller will be handed: for a child process to listen on.
func Port() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.next == 0 {
		ports.next = portLow + rand.IntN(portHigh-portLow)
	}
	for range portHigh - portLow {
		p := ports.next
		ports.next++
		if ports.next >= portHigh {
			ports.next = portLow
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("freeport: no free loopback port between 20000 and 32000")
}

// Addr is Port as a host:port.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}
