package extauthz

import (
	"log/slog"
	"strconv"
	"sync"

	"github.com/quotagate/quotagate/engine"
)

// maxUnknownActionNames bounds how many distinct unknown action names are
// remembered (and so logged) per configuration: a client that can choose
// the action could otherwise send a new name with every request.
const maxUnknownActionNames = 256

// unknownActionLog logs a warning the first time each unknown action name
// is seen, up to maxUnknownActionNames names, then once that it stopped.
// The zero value is ready to use; it is safe for concurrent use.
type unknownActionLog struct {
	mu   sync.Mutex
	seen map[string]bool
	full bool
}

// warn logs d's unknown action unless it was logged before. It runs after
// the engine decided, outside any engine lock.
func (l *unknownActionLog) warn(logger *slog.Logger, d *engine.Decision) {
	name := d.UnknownAction
	l.mu.Lock()
	if l.seen[name] || l.full {
		l.mu.Unlock()
		return
	}
	if l.seen == nil {
		l.seen = make(map[string]bool)
	}
	full := len(l.seen) >= maxUnknownActionNames
	if full {
		l.full = true
	} else {
		l.seen[name] = true
	}
	l.mu.Unlock()
	if full {
		logger.Warn("extauthz: more than 256 unknown action names since the configuration was loaded; no longer logging each "+
			"(they are still counted in quota_unknown_actions_total)", "decision_id", d.ID.String())
		return
	}
	what := "requests naming it are refused with 403 unknown_action (the client is told only that the request is not available)"
	if d.Reason != engine.ReasonUnknownAction {
		what = "requests naming it are priced and limited as " + d.Action + " (quota_manager.unknown_actions)"
	}
	logger.Warn("extauthz: action "+strconv.Quote(name)+" has no price in quota_manager.actions and no tier or role lists it in features: "+what+
		". If it is a typo, fix the route's context_extensions (or the ?action= of the authorization URL); if it is a new action, "+
		"add it to quota_manager.actions. Logged once per action name.",
		"action", name, "decision_id", d.ID.String(), "tier", string(d.Tier))
}
