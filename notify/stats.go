package notify

// Stats counts what a Notifier did since New. The admin API and /metrics
// expose it.
type Stats struct {
	// Received counts alerts raised: engine events and anomalies.
	Received uint64 `json:"received"`
	// Deduplicated counts alerts dropped as copies of one already sent for
	// the same kind, subject, limit and window.
	Deduplicated uint64 `json:"deduplicated"`
	// Dropped counts alerts refused because the queue was full, or
	// abandoned at shutdown.
	Dropped uint64 `json:"dropped"`
	// Anomalies counts anomalies the detector found.
	Anomalies uint64 `json:"anomalies"`
	// Channels has the counts of each active channel, by name
	// ("webhook", "email", "dashboard").
	Channels map[string]ChannelStats `json:"channels"`
}

// Stats returns a snapshot of the counters. It is safe for concurrent use.
func (n *Notifier) Stats() Stats {
	s := Stats{
		Received:     n.received.Load(),
		Deduplicated: n.dupes.Load(),
		Dropped:      n.dropped.Load(),
		Anomalies:    n.anomalies.Load(),
		Channels:     make(map[string]ChannelStats, len(n.workers)+1),
	}
	if n.dashboard != nil {
		d := n.dashStats.snapshot()
		d.Dropped = n.dashboard.slow.Load()
		s.Channels[ChannelDashboard.String()] = d
	}
	for _, w := range n.workers {
		s.Channels[w.channel.String()] = w.stats.snapshot()
	}
	return s
}
