package main

// defaultGCHeapFloorMiB is the default of serve's --gc-heap-floor, in MiB.
const defaultGCHeapFloorMiB = 64

// heapFloor returns mib MiB of memory for serve to keep reachable until it
// returns, or nil for 0: a floor under the heap size that starts a garbage
// collection.
//
// The collector starts a cycle when the heap has grown by GOGC percent
// (100) over what the last cycle found live. A server whose cached state
// is small, as most are, then collects every few megabytes allocated:
// hundreds of times a second under load. Each cycle costs its mark work,
// and it also shrinks the stacks of the gRPC stream workers, idle at that
// moment, which their next Check grows again; together they were 13% of
// the process's CPU in extauthz's BenchmarkGRPCCheckEnvoy (client
// included), and 3% with cycles four times rarer (GOGC=400). Memory counted as live raises the next target by
// twice its size. This memory holds no pointers, so marking it is free,
// and it is never written, so the OS never backs it with pages: the
// resident memory grows only by the garbage that now waits longer between
// cycles (up to about twice the floor), not by the floor itself. It does
// count in the Go heap metrics and against GOMEMLIMIT.
func heapFloor(mib int) []byte {
	if mib <= 0 {
		return nil
	}
	return make([]byte, mib<<20)
}
