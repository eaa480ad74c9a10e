package admin

import (
	"net/http"
	"strings"
	"testing"
)

// targetKind says how a matrix row's target relates to teams.
type targetKind int

const (
	ofBlue        targetKind = iota // a blue member or blue itself: blue tokens may touch it
	ofNoTeam                        // global: team-restricted tokens are refused
	openCatalogue                   // global but open to any token with the scope
)

// matrixRow is one endpoint of the access-control matrix.
type matrixRow struct {
	method, path, body string
	scope              Scope
	kind               targetKind
	// hidden, if set, must not appear in a successful answer to another
	// team's token (a list filtered by team).
	hidden string
}

// cell is one column of the matrix: who calls.
type cell struct {
	name  string
	token string // the secret sent; "" sends none
	want  int    // 0: any 2xx
}

func matrixRows(alertID string) []matrixRow {
	return []matrixRow{
		{method: "GET", path: "/v1/subjects/alice", scope: ScopeRead},
		{method: "PUT", path: "/v1/subjects/alice/profile", body: `{"tier":"standard"}`, scope: ScopeWrite},
		{method: "PATCH", path: "/v1/subjects/alice/profile", body: `{"roles":["analyst"]}`, scope: ScopeWrite},
		{method: "POST", path: "/v1/subjects/alice/credits", body: `{"delta":5}`, scope: ScopeWrite},
		{method: "GET", path: "/v1/teams/blue", scope: ScopeRead},
		{method: "POST", path: "/v1/teams/blue/credits", body: `{"delta":5}`, scope: ScopeWrite},
		{method: "GET", path: "/v1/tiers", scope: ScopeRead, kind: openCatalogue},
		{method: "GET", path: "/v1/config", scope: ScopeRead, kind: ofNoTeam},
		{method: "GET", path: "/v1/capacity", scope: ScopeRead, kind: ofNoTeam},
		{method: "PUT", path: "/v1/capacity", body: `{"factor":1}`, scope: ScopeAdmin, kind: ofNoTeam},
		{method: "GET", path: "/v1/alerts", scope: ScopeRead, hidden: alertID},
		{method: "POST", path: "/v1/alerts/" + alertID + "/ack", scope: ScopeWrite},
		{method: "GET", path: "/v1/usage?team=blue", scope: ScopeRead},
		{method: "GET", path: "/v1/stream", scope: ScopeRead, kind: ofNoTeam},
	}
}

// cells returns the matrix's columns for row: no token, a wrong token, a
// token one scope too low, another team's admin token, the right token
// with exactly the scope needed, and an unrestricted admin token.
func (row matrixRow) cells() []cell {
	team := "blue-"
	if row.kind != ofBlue {
		team = ""
	}
	cs := []cell{
		{name: "no token", want: http.StatusUnauthorized},
		{name: "wrong token", token: "qg-test-not-a-token", want: http.StatusUnauthorized},
	}
	if row.scope > ScopeRead {
		cs = append(cs, cell{name: "scope " + (row.scope - 1).String(), token: tokenSecret(team + scopeToken(row.scope-1)), want: http.StatusForbidden})
	}
	other := cell{name: "other team", token: tokenSecret("green-admin"), want: http.StatusForbidden}
	if row.kind == openCatalogue || row.hidden != "" {
		other.want = 0
	}
	return append(cs, other,
		cell{name: "right token", token: tokenSecret(team + scopeToken(row.scope))},
		cell{name: "unrestricted admin", token: tokenSecret("admin")},
	)
}

// scopeToken names the token of scope s (testTokens names them by scope).
func scopeToken(s Scope) string { return s.String() }

func TestAccessMatrix(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: Config{AuthFailuresPerMinute: 10_000}})
	alert := f.emitAlert(t, "alice", "blue")
	rows := matrixRows(alert.ID.String())
	covered := map[string]bool{}
	for _, row := range rows {
		covered[row.method+" "+strings.Split(row.path, "?")[0]] = true
		for _, c := range row.cells() {
			t.Run(row.method+" "+row.path+"/"+c.name, func(t *testing.T) {
				before := len(f.led.adminRecords())
				code, body := f.do(t, row.method, row.path, row.body, c.token)
				ok := code >= 200 && code < 300
				switch {
				case c.want == 0 && !ok:
					t.Fatalf("= %d %s; want success", code, body)
				case c.want != 0 && code != c.want:
					t.Fatalf("= %d %s; want %d", code, body, c.want)
				}
				if !ok && len(f.led.adminRecords()) != before {
					t.Errorf("a refused request added an admin record to the ledger")
				}
				if c.name == "other team" && row.hidden != "" && strings.Contains(body, row.hidden) {
					t.Errorf("another team's token saw %s: %s", row.hidden, body)
				}
				if c.name == "right token" && row.hidden != "" && !strings.Contains(body, row.hidden) {
					t.Errorf("the right token did not see %s: %s", row.hidden, body)
				}
			})
		}
	}
	for _, rt := range f.srv.routeTable() {
		if rt.access == public {
			continue
		}
		path := strings.ReplaceAll(strings.ReplaceAll(rt.path, "{id}", "alice"), "{name}", "blue")
		if rt.path == "/v1/alerts/{id}/ack" {
			path = "/v1/alerts/" + alert.ID.String() + "/ack"
		}
		if !covered[rt.method+" "+path] {
			t.Errorf("%s %s is not in the access-control matrix", rt.method, rt.path)
		}
	}
}

// refusalRow is a request that every authorized token must see refused,
// with the code each column gets: right (the blue token with the scope
// needed), admin (unrestricted admin) and other (green's admin).
type refusalRow struct {
	method, path, body string
	scope              Scope
	right, admin       int
	other              int
}

// TestAccessMatrixRefusals extends the matrix with what must be refused
// whoever asks: unknown subjects, bad ids, unknown roles, teams and
// tiers, bad periods, too many limits, oversized bodies and credits out
// of bounds. Unauthenticated and under-scoped callers learn nothing more
// than before (401, 403), and no refused call records anything.
func TestAccessMatrixRefusals(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: Config{AuthFailuresPerMinute: 10_000}})
	huge := `{"roles":["` + strings.Repeat("r", maxBody) + `"]}`
	rows := []refusalRow{
		// Reading an unknown subject shows its start (default policy), to
		// unrestricted tokens only: it is in no team.
		{method: "GET", path: "/v1/subjects/nobody", scope: ScopeRead, right: 403, admin: 200, other: 403},
		{method: "PATCH", path: "/v1/subjects/nobody/profile", body: `{"tier":"standard"}`, scope: ScopeWrite, right: 404, admin: 404, other: 404},
		{method: "POST", path: "/v1/subjects/nobody/credits", body: `{"delta":5}`, scope: ScopeWrite, right: 404, admin: 404, other: 404},
		{method: "GET", path: "/v1/subjects/%00", scope: ScopeRead, right: 400, admin: 400, other: 400},
		{method: "PUT", path: "/v1/subjects/a%01b/profile", body: `{"team":"blue"}`, scope: ScopeWrite, right: 400, admin: 400, other: 400},
		{method: "PUT", path: "/v1/subjects/alice/profile", body: `{"roles":["root"]}`, scope: ScopeWrite, right: 400, admin: 400, other: 403},
		{method: "PUT", path: "/v1/subjects/alice/profile", body: `{"tier":"gold"}`, scope: ScopeWrite, right: 400, admin: 400, other: 403},
		{method: "PUT", path: "/v1/subjects/alice/profile", body: `{"team":"no-such-team"}`, scope: ScopeWrite, right: 403, admin: 400, other: 403},
		{method: "PATCH", path: "/v1/subjects/alice/profile", body: `{"limits":[{"period":"1ns","max":1}]}`, scope: ScopeWrite, right: 400, admin: 400, other: 403},
		{method: "PATCH", path: "/v1/subjects/alice/profile", body: `{"limits":[` + strings.Repeat(`{"period":"hour","max":1},`, 16) + `{"period":"day","max":1}]}`, scope: ScopeWrite, right: 400, admin: 400, other: 403},
		{method: "PUT", path: "/v1/subjects/alice/profile", body: huge, scope: ScopeWrite, right: 413, admin: 413, other: 413},
		{method: "POST", path: "/v1/subjects/alice/credits", body: `{"delta":-9223372036854775808}`, scope: ScopeWrite, right: 400, admin: 400, other: 403},
		{method: "POST", path: "/v1/teams/blue/credits", body: `{"delta":9223372036854775807}`, scope: ScopeWrite, right: 400, admin: 400, other: 403},
	}
	for _, row := range rows {
		cells := []cell{
			{name: "no token", want: http.StatusUnauthorized},
			{name: "wrong token", token: "qg-test-not-a-token", want: http.StatusUnauthorized},
		}
		if row.scope > ScopeRead {
			cells = append(cells, cell{name: "scope " + (row.scope - 1).String(), token: tokenSecret("blue-" + scopeToken(row.scope-1)), want: http.StatusForbidden})
		}
		cells = append(cells,
			cell{name: "other team", token: tokenSecret("green-admin"), want: row.other},
			cell{name: "right token", token: tokenSecret("blue-" + scopeToken(row.scope)), want: row.right},
			cell{name: "unrestricted admin", token: tokenSecret("admin"), want: row.admin},
		)
		for _, c := range cells {
			t.Run(row.method+" "+row.path[:min(len(row.path), 40)]+"/"+c.name, func(t *testing.T) {
				before := f.dump(t)
				code, body := f.do(t, row.method, row.path, row.body, c.token)
				if code != c.want {
					t.Fatalf("= %d %s; want %d", code, body[:min(len(body), 300)], c.want)
				}
				if after := f.dump(t); after != before {
					t.Fatalf("a refused call changed the state:\nbefore\n%s\nafter\n%s", before, after)
				}
			})
		}
	}
}
