package redistest

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/quotagate/quotagate/e2e/freeport"
)

// freePort returns a free loopback port; with bus set, port+10000 (a
// cluster node's bus port) is free as well.
func freePort(bus bool) (int, error) {
	for range 100 {
		port, err := freeport.Port()
		if err != nil {
			return 0, fmt.Errorf("redistest: find a free port: %w", err)
		}
		if !bus {
			return port, nil
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("redistest: found no free port pair for a cluster node and its bus")
}
