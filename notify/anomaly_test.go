package notify

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestDetector(t *testing.T) {
	// Windows of one minute; a count must exceed 5× the baseline and reach
	// 30 (0.5/s); three windows of history are needed; the newest window
	// weighs half in the baseline.
	cfg := AnomalyConfig{
		Enabled: true, Window: time.Minute, Factor: 5, MinRate: 0.5,
		WarmUp: 3, Smoothing: 0.5, MaxSubjects: 1000,
	}
	type step struct {
		minute  int // minutes after t0
		subject string
		n       int // requests in that minute
	}
	steady := func(subject string, from, to, n int) []step {
		var s []step
		for m := from; m <= to; m++ {
			s = append(s, step{m, subject, n})
		}
		return s
	}
	type found struct {
		subject string
		minute  int
		count   float64
	}
	tests := []struct {
		name  string
		steps []step
		want  []found
	}{
		{
			name:  "steady load is never anomalous",
			steps: steady("alice", 0, 9, 40),
		},
		{
			name:  "a spike after warm-up is reported once, when it crosses the factor",
			steps: append(steady("alice", 0, 4, 10), step{5, "alice", 100}),
			want:  []found{{"alice", 5, 51}},
		},
		{
			name:  "a spike during warm-up is not reported",
			steps: append(steady("alice", 0, 1, 10), step{2, "alice", 100}),
		},
		{
			name:  "a spike below the minimum rate is not reported",
			steps: append(steady("alice", 0, 4, 1), step{5, "alice", 20}),
		},
		{
			name: "the spike raises the baseline, and the next window needs a bigger one",
			steps: append(steady("alice", 0, 4, 10),
				step{5, "alice", 100}, step{6, "alice", 200}, step{7, "alice", 1000}),
			// Baseline after minute 5 is 55 (275 to beat); after minute 6, 127.5 (637.5).
			want: []found{{"alice", 5, 51}, {"alice", 7, 638}},
		},
		{
			name:  "idle windows decay the baseline",
			steps: append(steady("alice", 0, 4, 100), step{20, "alice", 100}),
			want:  []found{{"alice", 20, 30}},
		},
		{
			name: "subjects have their own baselines",
			steps: append(append(steady("alice", 0, 4, 10), steady("bob", 0, 4, 1000)...),
				step{5, "bob", 60}, step{5, "alice", 60}),
			want: []found{{"alice", 5, 51}},
		},
		{
			name:  "a new subject is in warm-up",
			steps: []step{{5, "carol", 1000}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDetector(cfg)
			var got []found
			for _, s := range tt.steps {
				for i := range s.n {
					now := t0.Add(time.Duration(s.minute)*time.Minute + time.Duration(i)*time.Millisecond)
					if a, ok := d.observe(s.subject, now); ok {
						if want := t0.Add(time.Duration(s.minute) * time.Minute); !a.windowStart.Equal(want) {
							t.Errorf("window start = %v, want %v", a.windowStart, want)
						}
						got = append(got, found{s.subject, s.minute, a.count})
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("anomalies = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("anomaly %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestDetectorEvictsLeastRecentSubjects(t *testing.T) {
	d := newDetector(AnomalyConfig{
		Window: time.Minute, Factor: 5, MinRate: 0.01, WarmUp: 1, Smoothing: 0.5, MaxSubjects: 1,
	})
	var entries int
	for i := range 1000 {
		d.observe(fmt.Sprintf("subject-%d", i), t0)
	}
	for i := range d.shards {
		entries += d.shards[i].lru.Len()
	}
	if entries > len(d.shards) {
		t.Errorf("detector holds %d subjects, want at most one per shard (%d)", entries, len(d.shards))
	}
}

func TestObserveRaisesOneAnomalyAlertPerWindow(t *testing.T) {
	n := newNotifier(t, Config{
		Enabled:  true,
		Channels: []Channel{ChannelDashboard},
		Anomaly: AnomalyConfig{
			Enabled: true, Window: time.Minute, Factor: 3, MinRate: 0.1, WarmUp: 2,
		},
	}, Options{})
	for m := range 3 {
		for range 10 {
			n.Observe("alice", "standard", t0.Add(time.Duration(m)*time.Minute))
		}
	}
	spike := t0.Add(3 * time.Minute)
	for range 500 {
		n.Observe("alice", "standard", spike)
	}
	start(t, n)()
	got := n.Recent(0)
	if len(got) != 1 {
		t.Fatalf("Recent = %d alerts, want 1: %+v", len(got), got)
	}
	a := got[0]
	if a.Kind != KindAnomaly || a.Subject != "alice" || a.Tier != "standard" || !a.Window.Equal(spike) {
		t.Errorf("alert = %+v, want an anomaly for alice (standard) in the window at %v", a, spike)
	}
	if a.Count != 31 || a.Baseline != 10 || a.Message != "Unusually high request rate." {
		t.Errorf("count, baseline, message = %v, %v, %q; want 31, 10, the default text", a.Count, a.Baseline, a.Message)
	}
	if s := n.Stats(); s.Anomalies != 1 {
		t.Errorf("Stats().Anomalies = %d, want 1", s.Anomalies)
	}
}

func TestObserveDoesNothingWhenDisabled(t *testing.T) {
	n := newNotifier(t, Config{Enabled: true, Channels: []Channel{ChannelDashboard}}, Options{})
	for range 1000 {
		n.Observe("alice", "standard", t0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := n.Stats(); s.Received != 0 {
		t.Errorf("Stats().Received = %d, want 0 with anomaly detection off", s.Received)
	}
}
