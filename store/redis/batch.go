package redis

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// batcher sends the charge scripts (and state and profile reads) of concurrent
// Checks to Redis together, in one pipeline ("natural batching"): while a
// pipeline is in flight, the commands that arrive queue up, and the first
// of them to be woken when it returns sends the whole queue as the next
// one. Nothing ever waits on a
// timer, so a lone Check goes out at once, and under load the read and
// write system calls of both sides are shared by a whole batch.
//
// Each script is still its own EVALSHA, atomic on the server, so batching
// changes no outcome. No goroutine is started: the caller whose turn it is
// sends the batch. It is safe for concurrent use.
type batcher struct {
	s   *Store
	max int // pipelines in flight at most

	mu       sync.Mutex
	queue    []*call
	inflight int // pipelines in flight, or leaders about to send one
}

// call is one command waiting in a batcher: the charge script with keys
// and args, or, when cmd is set, that command.
type call struct {
	keys []string
	args []any
	cmd  []any
	// wake receives true when the call must send the queue (it holds a
	// pipeline slot) and false when its result is in. It carries at most
	// one of each, so its buffer of two never blocks a sender.
	wake chan bool
	// sent and slot are guarded by batcher.mu: the call was taken into a
	// pipeline; the call holds one of the batcher's pipeline slots and
	// must lead a batch or hand the slot on.
	sent, slot bool
	// vals (the script's) or res (cmd's) and err are the outcome,
	// written before wake receives false.
	vals []int64
	res  *goredis.Cmd
	err  error
}

func newBatcher(s *Store, pipelines int) *batcher {
	return &batcher{s: s, max: max(pipelines, 1)}
}

// do runs c, batched with concurrent calls, and returns when its outcome
// is in c. ctx and timeout bound the wait: when either ends first, do
// returns an error at once, and c may or may not run (an unknown outcome,
// never retried). The timeout is a timer rather than a context derived
// from ctx, which would register with ctx's parent and unregister again
// on every call.
func (b *batcher) do(ctx context.Context, c *call, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	c.wake = make(chan bool, 2)
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := b.inflight < b.max
	if lead {
		b.inflight++
		c.slot = true
	}
	b.mu.Unlock()
	for {
		// lead is set while c holds a slot it has not used.
		if lead && ctx.Err() == nil {
			lead = false
			b.lead(ctx, c)
			continue // c's outcome is delivered like any other's
		}
		select {
		case l := <-c.wake:
			if l {
				lead = true
				continue
			}
			if lead { // another pipeline took c first
				b.mu.Lock()
				b.releaseLocked(c)
				b.mu.Unlock()
			}
			return c.err
		case <-ctx.Done():
			return b.giveUp(c, ctx.Err())
		case <-timer.C:
			return b.giveUp(c, fmt.Errorf("no answer within %s: %w", timeout, context.DeadlineExceeded))
		}
	}
}

// giveUp abandons c, whose caller stops waiting for cause, and returns
// the error that says whether c may have run.
func (b *batcher) giveUp(c *call, cause error) error {
	var err error
	if sent := b.abandon(c); sent {
		err = fmt.Errorf("wait for the reply: %w (the command may have run)", cause)
	} else {
		err = fmt.Errorf("wait for a pipeline: %w", cause)
	}
	if !errors.Is(cause, context.Canceled) {
		// Unhealthy now, not only once the late pipeline returns.
		b.s.lastErr.Store(&err)
	}
	return err
}

// abandon withdraws c, whose caller stops waiting, hands its pipeline
// slot on if it holds one, and reports whether c was sent already.
func (b *batcher) abandon(c *call) (sent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !c.sent {
		// Out of the queue first, so that the slot is not handed to c.
		if i := slices.Index(b.queue, c); i >= 0 {
			b.queue = slices.Delete(b.queue, i, i+1)
		}
	}
	b.releaseLocked(c)
	return c.sent
}

// lead sends the queue as one pipeline, delivers the results, then hands
// the pipeline slot that c holds on. The pipeline runs on its own
// goroutine, so the leader waits for its own result under its deadline
// like any other caller: a client that blocks past the context (a dial
// while a Sentinel failover goes on) never holds a Check past
// Options.Timeout. It first yields the processor once,
// so that the Checks already running on it reach the queue and go out in
// this pipeline rather than each leading one of their own: on a busy
// server that makes batches several times larger, and costs nothing on an
// idle one, whose run queue is empty.
func (b *batcher) lead(ctx context.Context, c *call) {
	runtime.Gosched()
	b.mu.Lock()
	batch := b.queue
	b.queue = nil
	for _, q := range batch {
		q.sent = true
	}
	b.mu.Unlock()
	if len(batch) == 0 {
		b.mu.Lock()
		b.releaseLocked(c)
		b.mu.Unlock()
		return
	}
	go func() {
		b.send(ctx, batch)
		b.mu.Lock()
		b.releaseLocked(c)
		b.mu.Unlock()
	}()
}

// releaseLocked hands the pipeline slot that c holds, if any, on. The
// caller holds b.mu.
func (b *batcher) releaseLocked(c *call) {
	if c.slot {
		c.slot = false
		b.handOffLocked()
	}
}

// handOffLocked gives a pipeline slot to the first queued call that holds
// none, waking it to send the queue, or, when there is none, frees the
// slot. The caller holds b.mu.
func (b *batcher) handOffLocked() {
	for _, next := range b.queue {
		if !next.slot {
			next.slot = true
			next.wake <- true
			return
		}
	}
	b.inflight--
}

// send runs batch in one pipeline within Options.Timeout and delivers each
// call's outcome. Scripts the server does not know (NOSCRIPT: it
// restarted, or SCRIPT FLUSH) did not run, so they are sent once more with
// their source; that reload is counted with the pipeline as one call. A
// pipeline that fails gives each of its calls an error. With
// Options.WaitReplicas, the calls are grouped by the primary that holds
// their keys (on a cluster), and each group's pipeline ends with WAIT, so
// no charge is reported before the replicas have it.
func (b *batcher) send(ctx context.Context, batch []*call) {
	s := b.s
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
	defer cancel()
	s.batched.Add(uint64(len(batch)))
	if s.opts.WaitReplicas == 0 {
		s.sendGroup(ctx, s.client, batch)
		return
	}
	cc, ok := s.client.(*goredis.ClusterClient)
	if !ok {
		s.sendGroup(ctx, s.client, batch)
		return
	}
	groups := map[*goredis.Client][]*call{}
	for _, c := range batch {
		node, err := cc.MasterForKey(ctx, c.key())
		if err != nil {
			c.err = s.record(err, "find the primary of "+c.key())
			c.wake <- false
			continue
		}
		groups[node] = append(groups[node], c)
	}
	var wg sync.WaitGroup
	for node, calls := range groups {
		wg.Go(func() { s.sendGroup(ctx, node, calls) })
	}
	wg.Wait()
}

// pipeliner is a client that makes pipelines: a UniversalClient or one
// node's client.
type pipeliner interface {
	Pipeline() goredis.Pipeliner
}

// sendGroup is send for calls that go through client in one pipeline.
func (s *Store) sendGroup(ctx context.Context, client pipeliner, batch []*call) {
	start := time.Now().UnixNano()
	cmds, err := s.execPipeline(ctx, client, batch, func(pipe goredis.Pipeliner, c *call) *goredis.Cmd {
		if c.cmd != nil {
			return pipe.Do(ctx, c.cmd...)
		}
		return chargeScript.EvalSha(ctx, pipe, c.keys, c.args...)
	})
	var again []*call
	var retry []int // index in batch of each call of again
	for i, c := range batch {
		if c.cmd == nil && goredis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			again, retry = append(again, c), append(retry, i)
		}
	}
	if len(again) > 0 {
		var cmds2 []*goredis.Cmd
		cmds2, err = s.execPipeline(ctx, client, again, func(pipe goredis.Pipeliner, c *call) *goredis.Cmd {
			return chargeScript.Eval(ctx, pipe, c.keys, c.args...)
		})
		for j, i := range retry {
			cmds[i] = cmds2[j]
		}
	}
	// Recorded before any caller wakes, so its Stats count this call.
	_ = s.recordSince(err, fmt.Sprintf("pipeline of %d commands", len(batch)), start)
	for i, c := range batch {
		deliver(c, cmds[i])
	}
}

// key returns the first key c touches, which names its slot.
func (c *call) key() string {
	if c.cmd != nil {
		i := 1
		if c.cmd[0] == "EVAL" {
			i = 3 // EVAL script numkeys key...
		}
		if k, ok := c.cmd[i].(string); ok {
			return k
		}
		return ""
	}
	return c.keys[0]
}

// execPipeline sends one pipeline of add(c) for every call of batch and returns
// the commands, which carry their own errors. The error is the
// connection's: nil unless every command failed or one failed as a server
// that is down, failing over or migrating a slot would (unreachable, MOVED,
// ASK, CLUSTERDOWN...), since one script's own error (a bad reply) says
// nothing of the server's health. On a Redis Cluster the client splits
// the pipeline per node, so one node's outage fails only its commands, and
// still makes the store report itself degraded.
func (s *Store) execPipeline(ctx context.Context, client pipeliner, batch []*call,
	add func(goredis.Pipeliner, *call) *goredis.Cmd) ([]*goredis.Cmd, error) {
	pipe := client.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	writes := false
	for i, c := range batch {
		cmds[i] = add(pipe, c)
		writes = writes || c.cmd == nil
	}
	var wait *goredis.Cmd
	if n := s.opts.WaitReplicas; n > 0 && writes {
		ms := int64(time.Millisecond)
		if dl, ok := ctx.Deadline(); ok {
			// Half the time left, so the reply beats the deadline; at
			// least 1ms, as 0 would wait for ever.
			ms = max(int64(time.Until(dl)/time.Millisecond)/2, 1)
		}
		wait = pipe.Do(ctx, "WAIT", n, ms)
	}
	_, err := pipe.Exec(ctx)
	if wait != nil {
		if got, werr := wait.Int64(); werr != nil || got < int64(s.opts.WaitReplicas) {
			// The scripts ran on the primary, but a failover could lose
			// them: their outcome is unknown, as after a timeout.
			lag := fmt.Errorf("store/redis: %d of %d replicas acknowledged the charges in time (%v); their outcome is unknown",
				got, s.opts.WaitReplicas, werr)
			for _, c := range cmds {
				if c.Err() == nil {
					c.SetErr(lag)
				}
			}
			return cmds, lag
		}
	}
	if err != nil && (!allFailed(cmds) || errors.Is(err, goredis.Nil)) {
		err = nil
		for _, c := range cmds {
			if unavailable(c.Err()) {
				return cmds, c.Err()
			}
		}
	}
	return cmds, err
}

// unavailable reports whether err says that the server (or the node of a
// cluster) could not run the command: no answer, or a reply that it is
// failing over, moving the slot or not ready. A script's own error and a
// missing key (goredis.Nil) are not such errors; NOSCRIPT is handled by
// the caller.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) {
		return false
	}
	var re goredis.Error
	if !errors.As(err, &re) {
		return true // a network error or a deadline
	}
	for _, p := range []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN", "NOREPLICAS"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// allFailed reports whether every command of cmds failed.
func allFailed(cmds []*goredis.Cmd) bool {
	for _, c := range cmds {
		if c.Err() == nil {
			return false
		}
	}
	return true
}

// deliver hands c its outcome from cmd and wakes it.
func deliver(c *call, cmd *goredis.Cmd) {
	if c.cmd != nil {
		c.res, c.err = cmd, cmd.Err()
	} else {
		c.vals, c.err = cmd.Int64Slice()
	}
	c.wake <- false
}
