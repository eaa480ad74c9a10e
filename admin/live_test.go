package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

func decisionID(n int) uuid.UUID {
	return uuid.MustParse(fmt.Sprintf("0193a5b4-0000-7000-8000-%012d", n))
}

func TestLiveSnapshot(t *testing.T) {
	l := newLive()
	ev := func(sec int, subject string, tier engine.Tier, reason engine.Reason, used, limit int64, id int) DecisionEvent {
		return DecisionEvent{Time: t0.Add(time.Duration(sec) * time.Second), Subject: subject, Tier: tier,
			Allowed: reason == engine.ReasonOK, Reason: reason, DecisionID: decisionID(id), Used: used, Limit: limit}
	}
	events := []DecisionEvent{
		ev(0, "alice", "freemium", engine.ReasonOK, 1, 10, 1),
		ev(0, "alice", "freemium", engine.ReasonOK, 2, 10, 2),
		ev(1, "bob", "standard", engine.ReasonOK, 50, 100, 3),
		ev(2, "alice", "freemium", engine.ReasonWindowExceeded, 10, 10, 4),
		ev(2, "carol", "freemium", engine.ReasonNoIdentity, 0, 0, 5),
	}
	for _, e := range events {
		l.observe(e)
	}
	l.observe(ev(-100, "late", "freemium", engine.ReasonOK, 0, 0, 6)) // older than the ring: not charted
	snap := l.snapshotAt(t0.Add(2 * time.Second))
	last := chartSeconds - 1 // index of t0+2s
	type point struct {
		series string
		i      int
		n      int64
	}
	want := []point{
		{"freemium/ok", last - 2, 2}, {"freemium/ok", last - 1, 0}, {"freemium/window_exceeded", last, 1},
		{"freemium/no_identity", last, 1}, {"standard/ok", last - 1, 1},
	}
	got := map[string][]int64{}
	for _, s := range snap.Series {
		got[s.Tier+"/"+s.Outcome] = s.Counts
	}
	if len(got) != 4 || l.secs[(t0.Unix()-100)&(liveSeconds-1)].unix == t0.Unix()-100 {
		t.Errorf("series = %v; want 4", got)
	}
	for _, p := range want {
		if c := got[p.series]; len(c) != chartSeconds || c[p.i] != p.n {
			t.Errorf("%s[%d] = %v; want %d", p.series, p.i, c, p.n)
		}
	}
	if len(snap.Rejections) != 2 || snap.Rejections[0].DecisionID != decisionID(5) || snap.Rejections[1].DecisionID != decisionID(4) {
		t.Errorf("rejections = %+v; want ids 5 then 4", snap.Rejections)
	}
	var top []string
	for _, u := range snap.Top {
		top = append(top, fmt.Sprintf("%s:%.0f", u.Subject, u.Percent))
	}
	if strings.Join(top, " ") != "alice:100 bob:50" {
		t.Errorf("top = %v; want alice:100 bob:50", top)
	}
	// After a minute and more the ring has moved on.
	l.observe(ev(70, "dave", "freemium", engine.ReasonOK, 1, 10, 7))
	snap = l.snapshotAt(t0.Add(70 * time.Second))
	if len(snap.Series) != 1 || snap.Series[0].Counts[chartSeconds-1] != 1 {
		t.Errorf("series a minute later = %+v; want only dave's second", snap.Series)
	}
}

func TestLiveRingsAreBounded(t *testing.T) {
	l := newLive()
	for i := range rejectionRing + 10 {
		l.observe(DecisionEvent{Time: t0, Subject: fmt.Sprintf("s%d", i), Tier: "freemium", Reason: engine.ReasonWindowExceeded,
			DecisionID: decisionID(i), Used: int64(i % 100), Limit: 100})
	}
	for i := range maxTop + 10 {
		l.observe(DecisionEvent{Time: t0, Subject: fmt.Sprintf("u%d", i), Tier: "freemium", Allowed: true, Used: 1, Limit: 100})
	}
	if n := len(l.top); n > maxTop {
		t.Errorf("top tracks %d subjects; want at most %d", n, maxTop)
	}
	snap := l.snapshotAt(t0)
	if len(snap.Rejections) != snapshotRejections || snap.Rejections[0].DecisionID != decisionID(rejectionRing+9) {
		t.Errorf("rejections: %d, newest %v; want %d, newest %v", len(snap.Rejections), snap.Rejections[0].DecisionID,
			snapshotRejections, decisionID(rejectionRing+9))
	}
	if len(snap.Top) != snapshotTop || snap.Top[0].Percent != 99 {
		t.Errorf("top = %+v; want %d entries led by 99%%", snap.Top, snapshotTop)
	}
}

func TestEventOf(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	d := f.charge(t, "alice")
	ev := EventOf(&d, "4bf92f3577b34da6a3ce929d0e0e4736", t0)
	want := DecisionEvent{Time: t0, Subject: "alice", Team: "blue", Tier: "freemium", Allowed: true, Reason: engine.ReasonOK,
		DecisionID: d.ID, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Used: 1, Limit: 10}
	if ev != want {
		t.Errorf("EventOf = %+v\nwant %+v", ev, want)
	}
}

// sseEvent is one event read from a stream.
type sseEvent struct{ name, data string }

// readEvents reads r's events into a channel until r ends.
func readEvents(r *bufio.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				ch <- ev
				ev = sseEvent{}
			}
		}
	}()
	return ch
}

func TestStream(t *testing.T) {
	f := newFixture(t, fixtureOpts{every: 10 * time.Millisecond, cfg: Config{Tokens: testTokens(),
		TraceURL: "https://tempo.example/explore?traceId={trace_id}"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tokenSecret("read"))
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /v1/stream = %d %s; want 200 text/event-stream", resp.StatusCode, ct)
	}
	events := readEvents(bufio.NewReader(resp.Body))
	next := func(want string, match func(string) bool) {
		t.Helper()
		for ev := range events {
			if ev.name == want && match(ev.data) {
				return
			}
		}
		t.Fatalf("the stream ended before a matching %q event", want)
	}
	next("snapshot", func(data string) bool {
		var s snapshot
		if err := json.Unmarshal([]byte(data), &s); err != nil {
			t.Fatalf("snapshot %s: %v", data, err)
		}
		return s.TraceURL == "https://tempo.example/explore?traceId={trace_id}"
	})
	f.srv.Observe(DecisionEvent{Time: f.clock.Now(), Subject: "alice", Tier: "freemium", Reason: engine.ReasonWindowExceeded,
		DecisionID: decisionID(42), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Used: 10, Limit: 10})
	next("snapshot", func(data string) bool { return strings.Contains(data, decisionID(42).String()) })
	a := f.emitAlert(t, "alice", "blue")
	next("alert", func(data string) bool { return strings.Contains(data, a.ID.String()) })
}

func BenchmarkObserve(b *testing.B) {
	for _, subjects := range []int{1, 1000, 100_000} {
		b.Run(fmt.Sprintf("subjects=%d", subjects), func(b *testing.B) {
			l := newLive()
			names := make([]string, subjects)
			for i := range names {
				names[i] = fmt.Sprintf("user-%d", i)
			}
			start := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					l.observe(DecisionEvent{Time: start, Subject: names[i%subjects], Tier: "standard",
						Allowed: i%10 != 0, Reason: engine.Reason(min(i%10, 1)), Used: int64(i % 100), Limit: 100})
				}
			})
		})
	}
}
