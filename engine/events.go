package engine

import "time"

// eventLocked queues an event for emission after the locks are released.
// The caller holds the locks of c.h.
func (c *charge) eventLocked(kind EventKind, d *Decision, a *applied, balance int64) {
	if c.e.events == nil {
		return
	}
	var ev *Event
	if c.nev < len(c.evs) {
		ev = &c.evs[c.nev]
		c.nev++
	} else {
		c.more = append(c.more, Event{})
		ev = &c.more[len(c.more)-1]
	}
	*ev = Event{Kind: kind, Time: time.Unix(0, c.now).In(c.rs.loc), Subject: c.req.Subject, Team: c.h.teamName,
		Tier: d.Tier, DecisionID: d.ID, Balance: balance}
	if a != nil {
		ev.Limit = c.limitStatusLocked(a)
		ev.Window = time.Unix(0, a.ws().start).In(c.rs.loc)
	}
}

// emit hands queued events to the sink. It is called without locks.
func (c *charge) emit() {
	for i := range c.nev {
		c.e.events.Emit(c.evs[i])
	}
	for i := range c.more {
		c.e.events.Emit(c.more[i])
	}
	if n := c.nev + len(c.more); n > 0 {
		c.e.eventsEmitted.Add(uint64(n))
	}
}
