package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/config"
)

// exposureWarning returns a warning when f trusts an identity header
// (identity.header.trusted with header among identity.sources) and one of
// the listeners that decide requests, addrs (the gRPC ext_authz address and
// the HTTP authorization address, as serve resolved them; empty ones are
// skipped), accepts connections from beyond the loopback interface. Anyone
// who reaches such a listener can then claim any identity. It returns ""
// when there is nothing to warn about.
func exposureWarning(f *config.File, addrs ...string) string {
	h := f.Identity.Header
	if !h.Trusted || !slices.Contains(f.Identity.Sources, config.SourceHeader) {
		return ""
	}
	var exposed []string
	for _, a := range addrs {
		if a != "" && !admin.IsLoopback(a) {
			exposed = append(exposed, a)
		}
	}
	if len(exposed) == 0 {
		return ""
	}
	return fmt.Sprintf("identity.header.trusted is true and quotagate listens beyond loopback on %s: "+
		"anyone who can reach it can claim any identity in the %s header. "+
		"Listen on 127.0.0.1 only (server.grpc_addr, --grpc-addr), or identify callers with jwt, mtls or api_key "+
		"and set identity.header.trusted to false unless only a proxy that authenticates callers can reach this address",
		strings.Join(exposed, ", "), h.Name)
}
