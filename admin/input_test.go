package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
)

// knownIDs are the subjects the admin tests look at when comparing state.
var knownIDs = []string{"alice", "bob", "carol", "dave", "erin", "newbie"}

// dump describes everything a refused admin call must leave as it was:
// which subjects exist and their status, the admin records in the
// ledger, the alerts and the capacity.
func (f *fixture) dump(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, id := range knownIDs {
		known, err := f.eng.Known(ctx, id)
		if err != nil {
			t.Fatalf("Known(%s): %v", id, err)
		}
		fmt.Fprintf(&b, "%s known=%v\n", id, known)
		if !known {
			continue
		}
		st, err := f.eng.Status(ctx, id)
		if err != nil {
			t.Fatalf("Status(%s): %v", id, err)
		}
		j, _ := json.Marshal(st)
		fmt.Fprintf(&b, "  %s\n", j)
	}
	for _, team := range []string{"blue", "green"} {
		st, err := f.eng.Status(ctx, "team:"+team)
		if err != nil {
			t.Fatalf("Status(team:%s): %v", team, err)
		}
		j, _ := json.Marshal(st)
		fmt.Fprintf(&b, "team %s %s\n", team, j)
	}
	recs, _ := json.Marshal(f.led.adminRecords())
	alerts, _ := json.Marshal(f.notif.Recent(0))
	fmt.Fprintf(&b, "ledger %s\nalerts %s\ncapacity %+v\n", recs, alerts, f.eng.Capacity())
	return b.String()
}

// TestAdminInputRefused sends what a careless or hostile operator might
// and checks each answer's status and message, and that every refused
// call leaves the state, the ledger and the alerts as they were.
func TestAdminInputRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	long := strings.Repeat("x", engine.MaxSubjectIDBytes+1)
	var manyRoles strings.Builder
	manyRoles.WriteString(`{"roles":[`)
	for i := range 60_000 {
		if i > 0 {
			manyRoles.WriteString(",")
		}
		fmt.Fprintf(&manyRoles, `"role-%d"`, i)
	}
	manyRoles.WriteString(`]}`)
	limits := func(n int, period string) string {
		var ls []string
		for i := range n {
			ls = append(ls, fmt.Sprintf(`{"name":"l%d","period":%q,"max":5}`, i, period))
		}
		return `{"limits":[` + strings.Join(ls, ",") + `]}`
	}
	tests := []struct {
		name, method, path, body string
		code                     int
		say                      string
	}{
		{name: "GET an unknown subject shows its start, creating nothing", method: "GET", path: "/v1/subjects/nobody", code: 200},
		{name: "PATCH an unknown subject", method: "PATCH", path: "/v1/subjects/nobody/profile", body: `{"tier":"standard"}`, code: 404, say: "PUT"},
		{name: "credits to an unknown subject", method: "POST", path: "/v1/subjects/nobody/credits", body: `{"delta":5}`, code: 404},
		{name: "NUL id", method: "GET", path: "/v1/subjects/%00", code: 400, say: "U+0000"},
		{name: "NUL id PUT", method: "PUT", path: "/v1/subjects/a%00b/profile", body: `{"tier":"standard"}`, code: 400, say: "invalid subject id"},
		{name: "newline id", method: "PUT", path: "/v1/subjects/a%0Ab/profile", body: `{}`, code: 400, say: "unprintable"},
		{name: "id not UTF-8", method: "PUT", path: "/v1/subjects/a%FFb/profile", body: `{}`, code: 400, say: "UTF-8"},
		{name: "id too long", method: "PUT", path: "/v1/subjects/" + long + "/profile", body: `{}`, code: 400, say: "at most 256"},
		{name: "team key as id", method: "PUT", path: "/v1/subjects/team:blue/profile", body: `{}`, code: 400, say: "/v1/teams/"},
		{name: "unknown role", method: "PATCH", path: "/v1/subjects/alice/profile", body: `{"roles":["analyst","root"]}`, code: 400, say: `profile.roles[1]: unknown role "root"`},
		{name: "role twice", method: "PATCH", path: "/v1/subjects/alice/profile", body: `{"roles":["analyst","analyst"]}`, code: 400, say: "twice"},
		{name: "unknown team", method: "PATCH", path: "/v1/subjects/carol/profile", body: `{"team":"no-such-team"}`, code: 400, say: "profile.team"},
		{name: "unknown tier", method: "PUT", path: "/v1/subjects/carol/profile", body: `{"tier":"gold"}`, code: 400, say: "profile.tier"},
		{name: "1ns period", method: "PATCH", path: "/v1/subjects/carol/profile", body: limits(1, "1ns"), code: 400, say: "profile.limits[0].period: must be at least 1s"},
		{name: "fractional period", method: "PATCH", path: "/v1/subjects/carol/profile", body: limits(1, "1500ms"), code: 400, say: "whole number of seconds"},
		{name: "limits past the cap with the tier's", method: "PATCH", path: "/v1/subjects/carol/profile", body: limits(16, "hour"), code: 400, say: "up to 17 limits"},
		{name: "more limits than ever fit", method: "PATCH", path: "/v1/subjects/carol/profile", body: limits(40, "hour"), code: 400, say: "at most 16"},
		{name: "60 000 roles", method: "PUT", path: "/v1/subjects/carol/profile", body: manyRoles.String(), code: 413, say: "at most 65536 bytes"},
		{name: "body too long after the object", method: "PUT", path: "/v1/subjects/carol/profile", body: `{"tier":"standard"}` + strings.Repeat(" ", maxBody), code: 413},
		{name: "two objects", method: "PUT", path: "/v1/subjects/carol/profile", body: `{"tier":"standard"}{"tier":"enterprise"}`, code: 400},
		{name: "credits past the bound", method: "POST", path: "/v1/subjects/carol/credits", body: `{"delta":1000000000000000001}`, code: 400, say: "between"},
		{name: "credits at int64 max", method: "POST", path: "/v1/subjects/carol/credits", body: `{"delta":9223372036854775807}`, code: 400},
		{name: "credits past int64", method: "POST", path: "/v1/subjects/carol/credits", body: `{"delta":9223372036854775808}`, code: 400, say: "invalid JSON"},
		{name: "credits at int64 min", method: "POST", path: "/v1/subjects/carol/credits", body: `{"delta":-9223372036854775808}`, code: 400},
		{name: "team credits past the bound", method: "POST", path: "/v1/teams/blue/credits", body: `{"delta":9007199254740991}`, code: 400, say: "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump(t)
			code, body := f.do(t, tc.method, tc.path, tc.body, tokenSecret("admin"))
			var msg errBody
			if err := json.Unmarshal([]byte(body), &msg); err != nil {
				t.Fatalf("= %d %s: not a JSON error: %v", code, body, err)
			}
			if code != tc.code || !strings.Contains(msg.Error, tc.say) {
				t.Fatalf("= %d %s; want %d saying %q", code, body, tc.code, tc.say)
			}
			if after := f.dump(t); after != before {
				t.Fatalf("the refused call changed the state:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}

	// The finding: limits that, with the tier's, pass the cap were
	// committed and broke the subject. Now they are refused, and the
	// subject stays readable, changeable and metered.
	if code, body := f.do(t, "GET", "/v1/subjects/carol", "", tokenSecret("read")); code != 200 {
		t.Fatalf("GET carol = %d %s", code, body)
	}
	if d, err := f.eng.ChargeAt(context.Background(), f.clock.Now(), engine.Request{Subject: "carol"}); err != nil || len(d.Limits()) == 0 {
		t.Fatalf("Check of carol: err %v, %d limits; want metered", err, len(d.Limits()))
	}
	// Credits up to the bound, then one more.
	f.doJSON(t, "POST", "/v1/subjects/carol/credits", fmt.Sprintf(`{"delta":%d}`, engine.MaxCredits), "write", 200, nil)
	if code, body := f.do(t, "POST", "/v1/subjects/carol/credits", `{"delta":1}`, tokenSecret("write")); code != 400 || !strings.Contains(body, "largest delta allowed is 0") {
		t.Fatalf("credits past MaxCredits = %d %s; want 400", code, body)
	}
}

// TestPutCreatesSubject: PUT is the one call that creates a subject; a
// team-restricted token may only create it in its team.
func TestPutCreatesSubject(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	steps := []struct {
		name, method, path, body, token string
		code                            int
	}{
		{name: "blue token, no team", method: "PUT", path: "/v1/subjects/dave/profile", body: `{"tier":"standard"}`, token: "blue-write", code: 403},
		{name: "blue token, green team", method: "PUT", path: "/v1/subjects/dave/profile", body: `{"team":"green"}`, token: "blue-write", code: 403},
		{name: "still unknown", method: "PATCH", path: "/v1/subjects/dave/profile", body: `{}`, token: "write", code: 404},
		{name: "blue token, into blue", method: "PUT", path: "/v1/subjects/dave/profile", body: `{"team":"blue"}`, token: "blue-write", code: 200},
		{name: "now known", method: "GET", path: "/v1/subjects/dave", token: "blue-read", code: 200},
		{name: "credits now", method: "POST", path: "/v1/subjects/dave/credits", body: `{"delta":3}`, token: "blue-write", code: 200},
		{name: "unrestricted create", method: "PUT", path: "/v1/subjects/erin/profile", body: `{}`, token: "write", code: 200},
		{name: "PATCH after create", method: "PATCH", path: "/v1/subjects/erin/profile", body: `{"roles":["auditor"]}`, token: "write", code: 200},
		{name: "a name with a space", method: "PUT", path: "/v1/subjects/Jane%20Doe/profile", body: `{}`, token: "write", code: 200},
	}
	for _, st := range steps {
		if code, body := f.do(t, st.method, st.path, st.body, tokenSecret(st.token)); code != st.code {
			t.Fatalf("%s: = %d %s; want %d", st.name, code, body, st.code)
		}
	}
	// A create that the ledger refuses leaves no subject behind.
	f.led.setFail(true)
	before := f.dump(t)
	if code, body := f.do(t, "PUT", "/v1/subjects/newbie/profile", `{"tier":"standard"}`, tokenSecret("write")); code != 503 {
		t.Fatalf("PUT with the ledger down = %d %s; want 503", code, body)
	}
	if after := f.dump(t); after != before {
		t.Fatalf("a create the ledger refused changed the state:\nbefore\n%s\nafter\n%s", before, after)
	}
	f.led.setFail(false)
	if code, _ := f.do(t, "POST", "/v1/subjects/newbie/credits", `{"delta":1}`, tokenSecret("write")); code != 404 {
		t.Fatalf("credits to newbie = %d; want 404", code)
	}
}

// TestUnknownSubjectsPolicy: with unknown_subjects: deny, reading an
// unknown subject answers 404 too; with the default policy it shows the
// state it would start with. Neither creates it.
func TestUnknownSubjectsPolicy(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var got subjectJSON
	f.doJSON(t, "GET", "/v1/subjects/zed", "", "read", 200, &got)
	if got.Tier != "freemium" || len(got.Limits) != 1 || got.Limits[0].Used != 0 {
		t.Fatalf("GET zed = %+v; want its start on freemium", got)
	}
	if known, _ := f.eng.Known(context.Background(), "zed"); known {
		t.Fatal("reading zed created it")
	}
	cfg := engineRules()
	cfg.DenyUnknown = true
	if err := f.eng.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code, body := f.do(t, "GET", "/v1/subjects/zed", "", tokenSecret("read")); code != 404 || !strings.Contains(body, "PUT") {
		t.Fatalf("GET zed under deny = %d %s; want 404 saying how to create it", code, body)
	}
	f.doJSON(t, "PUT", "/v1/subjects/zed/profile", `{"tier":"standard"}`, "write", 200, nil)
	f.doJSON(t, "GET", "/v1/subjects/zed", "", "read", 200, nil)
	if d := f.charge(t, "zed"); !d.Allowed || d.Tier != "standard" {
		t.Fatalf("Check of zed after its PUT under deny: %+v", d)
	}
}

// TestStoredProfileRepair: a reload removes the role and team a stored
// profile names. The subject stays readable (with the problem shown), its
// Checks on a fail-open tier are metered, and a PATCH repairs it.
func TestStoredProfileRepair(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.doJSON(t, "PUT", "/v1/subjects/carol/profile", `{"tier":"enterprise","roles":["auditor"],"limits":[{"name":"hour","period":"hour","max":2}]}`, "write", 200, nil)
	cfg := engineRules()
	delete(cfg.Roles, "auditor")
	ent := cfg.Tiers["enterprise"]
	ent.FailureMode = engine.FailOpen
	cfg.Tiers["enterprise"] = ent
	if err := f.eng.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	var got subjectJSON
	f.doJSON(t, "GET", "/v1/subjects/carol", "", "read", 200, &got)
	if !strings.Contains(got.ProfileProblem, `profile.roles[0]: unknown role "auditor"`) || got.Tier != "enterprise" {
		t.Fatalf("GET carol = %+v; want the problem named and the tier kept", got)
	}
	for i := range 3 {
		d, err := f.eng.ChargeAt(context.Background(), f.clock.Now(), engine.Request{Subject: "carol"})
		if err != nil || !d.Allowed || len(d.Limits()) == 0 || d.Limits()[0].Limit != 500 {
			t.Fatalf("Check %d: err %v allowed %v limits %+v; want metered by enterprise's 500/hour (the bad profile's override ignored)", i, err, d.Allowed, d.Limits())
		}
	}
	var repaired subjectJSON
	f.doJSON(t, "PATCH", "/v1/subjects/carol/profile", `{"roles":[]}`, "write", 200, &repaired)
	if got = repaired; got.ProfileProblem != "" || got.Limits[0].Limit != 2 {
		t.Fatalf("after the repair: %+v; want no problem and the override back", got)
	}
	if d := f.charge(t, "carol"); d.Allowed {
		t.Fatalf("the repaired override (2/hour, 3 used) did not apply")
	}
}

// TestEveryAnswerIsJSON: paths the mux would otherwise answer itself (a
// redirect for a non-canonical path, a plain-text 404) get a JSON error
// that says what was wrong, and change nothing.
func TestEveryAnswerIsJSON(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tests := []struct {
		name, method, path string
		code               int
		say                string
	}{
		{name: "subject id dot", method: "POST", path: "/v1/subjects/./credits", code: 400, say: "not canonical"},
		{name: "subject id dot dot", method: "PUT", path: "/v1/subjects/../profile", code: 400, say: "not canonical"},
		{name: "doubled slash", method: "GET", path: "/v1//subjects/alice", code: 400, say: "not canonical"},
		{name: "no such endpoint", method: "GET", path: "/v1/nothing", code: 404, say: "/openapi.json"},
		{name: "no such method", method: "DELETE", path: "/v1/subjects/alice", code: 404, say: "no endpoint DELETE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump(t)
			code, body := f.do(t, tc.method, tc.path, `{"delta":5}`, tokenSecret("admin"))
			var msg errBody
			if err := json.Unmarshal([]byte(body), &msg); err != nil || code != tc.code || !strings.Contains(msg.Error, tc.say) {
				t.Fatalf("= %d %s (%v); want %d saying %q", code, body, err, tc.code, tc.say)
			}
			if after := f.dump(t); after != before {
				t.Fatalf("refused call changed the state")
			}
		})
	}
}
