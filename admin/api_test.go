package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
)

// charge sends one request for subject through the engine at the fixture's
// clock and returns the decision.
func (f *fixture) charge(t *testing.T, subject string) engine.Decision {
	t.Helper()
	d, err := f.eng.ChargeAt(context.Background(), f.clock.Now(), engine.Request{Subject: subject})
	if err != nil {
		t.Fatalf("ChargeAt(%s): %v", subject, err)
	}
	return d
}

func TestTierChangeTakesEffectOnNextCheck(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for i := range 10 {
		if d := f.charge(t, "carol"); !d.Allowed {
			t.Fatalf("request %d of freemium's 10/hour refused: %v", i+1, d.Reason)
		}
		f.clock.Advance(time.Second)
	}
	if d := f.charge(t, "carol"); d.Allowed || d.Reason != engine.ReasonWindowExceeded {
		t.Fatalf("11th freemium request: allowed=%v reason=%v; want window_exceeded", d.Allowed, d.Reason)
	}
	var got subjectJSON
	f.doJSON(t, "PUT", "/v1/subjects/carol/profile", `{"tier":"standard"}`, "write", http.StatusOK, &got)
	if got.Tier != "standard" || len(got.Limits) != 1 || got.Limits[0].Limit != 100 || got.Limits[0].Used != 10 {
		t.Fatalf("after PUT tier=standard: %+v; want standard with 10 of 100 used", got)
	}
	if d := f.charge(t, "carol"); !d.Allowed || d.Tier != "standard" {
		t.Fatalf("next Check after the upgrade: allowed=%v tier=%s; want allowed on standard", d.Allowed, d.Tier)
	}
	// A limit override takes effect on the next Check too.
	f.doJSON(t, "PATCH", "/v1/subjects/carol/profile", `{"limits":[{"name":"hour","period":"hour","max":11}]}`, "write", http.StatusOK, &got)
	if got.Tier != "standard" || got.Limits[0].Limit != 11 {
		t.Fatalf("after PATCH limits: %+v; want standard with the hour limit at 11", got)
	}
	if d := f.charge(t, "carol"); d.Allowed {
		t.Fatalf("Check after lowering the limit to the usage was allowed")
	}
	recs := f.led.adminRecords()
	if len(recs) != 2 || recs[0].Admin.What != "profile" || recs[0].Admin.Actor != "write" ||
		!strings.Contains(recs[0].Admin.After, `"tier":"standard"`) || recs[0].Subject != "carol" {
		t.Fatalf("ledger admin records = %+v; want two profile changes by write", recs)
	}
}

func TestSubjectAndTeam(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.charge(t, "alice")
	var s subjectJSON
	f.doJSON(t, "GET", "/v1/subjects/alice", "", "blue-read", http.StatusOK, &s)
	want := subjectJSON{Subject: "alice", Team: "blue", Tier: "freemium", Priority: "low",
		Limits:  []limitStatusJSON{{Name: "hour", Period: "hour", Limit: 10, Used: 1, Remaining: 9, Reset: t0.Truncate(time.Hour).Add(time.Hour)}},
		Balance: balanceJSON{Owner: "team:blue", Balance: 100, Credits: 100, HasBalance: true}}
	if !equalJSON(t, s, want) {
		t.Errorf("GET alice = %+v\nwant %+v", s, want)
	}
	var team teamJSON
	f.doJSON(t, "GET", "/v1/teams/blue", "", "read", http.StatusOK, &team)
	if team.Team != "blue" || !slices.Equal(team.Members, []string{"alice"}) || team.Balance.Balance != 100 {
		t.Errorf("GET team blue = %+v; want alice and a balance of 100", team)
	}
	for _, tc := range []struct {
		name, path string
		code       int
	}{
		{name: "unknown team", path: "/v1/teams/red", code: http.StatusNotFound},
		{name: "team key as subject", path: "/v1/subjects/team:blue", code: http.StatusBadRequest},
		{name: "carol is in no team", path: "/v1/subjects/carol", code: http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := "read"
			if tc.code == http.StatusForbidden {
				token = "blue-read"
			}
			if code, body := f.do(t, "GET", tc.path, "", tokenSecret(token)); code != tc.code {
				t.Errorf("GET %s = %d %s; want %d", tc.path, code, body, tc.code)
			}
		})
	}
}

func TestTeamTokenCannotMoveSubjects(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{name: "into another team", method: "PATCH", path: "/v1/subjects/alice/profile", body: `{"team":"green"}`, code: 403},
		{name: "a non-member into its team", method: "PUT", path: "/v1/subjects/carol/profile", body: `{"team":"blue"}`, code: 403},
		{name: "within its team", method: "PUT", path: "/v1/subjects/alice/profile", body: `{"team":"blue","tier":"standard"}`, code: 200},
		{name: "unknown tier", method: "PUT", path: "/v1/subjects/alice/profile", body: `{"tier":"platinum"}`, code: 400},
		{name: "bad period", method: "PUT", path: "/v1/subjects/alice/profile", body: `{"limits":[{"period":"fortnight","max":5}]}`, code: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := f.do(t, tc.method, tc.path, tc.body, tokenSecret("blue-write")); code != tc.code {
				t.Errorf("= %d %s; want %d", code, body, tc.code)
			}
		})
	}
	if st, _ := f.eng.Status(context.Background(), "alice"); st.Team != "blue" || st.Tier != "standard" {
		t.Errorf("alice is in %q on %q; want blue on standard", st.Team, st.Tier)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestCredits(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tests := []struct {
		name, path, body string
		code             int
		owner            string
		before, after    int64
	}{
		{name: "top up a subject", path: "/v1/subjects/carol/credits", body: `{"delta":50}`, code: 200, owner: "carol", before: 0, after: 50},
		{name: "adjust a subject down", path: "/v1/subjects/carol/credits", body: `{"delta":-20}`, code: 200, owner: "carol", before: 50, after: 30},
		{name: "below zero", path: "/v1/subjects/carol/credits", body: `{"delta":-31}`, code: 400},
		{name: "zero delta", path: "/v1/subjects/carol/credits", body: `{"delta":0}`, code: 400},
		{name: "unknown field", path: "/v1/subjects/carol/credits", body: `{"amount":5}`, code: 400},
		{name: "top up a team", path: "/v1/teams/blue/credits", body: `{"delta":25}`, code: 200, owner: "team:blue", before: 100, after: 125},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(f.led.adminRecords())
			code, body := f.do(t, "POST", tc.path, tc.body, tokenSecret("write"))
			if code != tc.code {
				t.Fatalf("= %d %s; want %d", code, body, tc.code)
			}
			recs := f.led.adminRecords()
			if code != 200 {
				if len(recs) != n {
					t.Errorf("a refused change was recorded: %+v", recs[n:])
				}
				return
			}
			var got creditsJSON
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if got.Owner != tc.owner || got.Before != tc.before || got.Balance != tc.after {
				t.Errorf("= %+v; want %s from %d to %d", got, tc.owner, tc.before, tc.after)
			}
			want := ledger.AdminChange{Actor: "write", What: "credits", Before: itoa(tc.before), After: itoa(tc.after)}
			if len(recs) != n+1 || *recs[n].Admin != want || recs[n].Subject != tc.owner || recs[n].Kind != ledger.KindAdmin {
				t.Errorf("ledger records %+v; want one %+v for %s", recs[n:], want, tc.owner)
			}
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestChangeUndoneWhenLedgerFails(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.led.setFail(true)
	for _, tc := range []struct{ name, method, path, body string }{
		{name: "credits", method: "POST", path: "/v1/subjects/carol/credits", body: `{"delta":50}`},
		{name: "profile", method: "PUT", path: "/v1/subjects/carol/profile", body: `{"tier":"enterprise"}`},
		{name: "capacity", method: "PUT", path: "/v1/capacity", body: `{"requests_per_second":50,"factor":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.do(t, tc.method, tc.path, tc.body, tokenSecret("admin"))
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "not made") {
				t.Fatalf("= %d %s; want 503 saying the change was not made", code, body)
			}
		})
	}
	st, err := f.eng.Status(context.Background(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	if st.Credits != 0 || st.Tier != "freemium" {
		t.Errorf("carol after refused changes: credits %d, tier %s; want 0 and freemium", st.Credits, st.Tier)
	}
	if c := f.eng.Capacity(); c.RequestsPerSecond != 0 || c.Factor != 1 {
		t.Errorf("capacity after a refused change = %+v; want 0 and factor 1", c)
	}
	if strings.Contains(f.logs.String(), "disk full") {
		return // the detail is logged for operators
	}
	t.Errorf("the ledger's error was not logged: %s", f.logs.String())
}

func TestTiersAndCapacity(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var tiers struct{ Tiers []tierJSON }
	f.doJSON(t, "GET", "/v1/tiers", "", "read", http.StatusOK, &tiers)
	var names []string
	for _, tr := range tiers.Tiers {
		names = append(names, tr.Name+":"+tr.Priority+":"+itoa(tr.Limits[0].Max))
	}
	if want := []string{"freemium:low:10", "standard:medium:100", "enterprise:high:500"}; !slices.Equal(names, want) {
		t.Errorf("tiers = %v; want %v", names, want)
	}
	if !tiers.Tiers[0].Default {
		t.Errorf("freemium is not marked default")
	}
	var c capacityJSON
	f.doJSON(t, "PUT", "/v1/capacity", `{"requests_per_second":200,"factor":0.5}`, "admin", http.StatusOK, &c)
	if c.RequestsPerSecond != 200 || c.Factor != 0.5 {
		t.Errorf("after PUT capacity = %+v; want 200 and 0.5", c)
	}
	var s subjectJSON
	f.doJSON(t, "GET", "/v1/subjects/carol", "", "read", http.StatusOK, &s)
	if s.Limits[0].Limit != 5 {
		t.Errorf("carol's hour limit at factor 0.5 = %d; want 5", s.Limits[0].Limit)
	}
	recs := f.led.adminRecords()
	if len(recs) != 2 || recs[0].Admin.What != "capacity" || recs[0].Admin.After != "200" ||
		recs[1].Admin.What != "capacity_factor" || recs[1].Admin.Before != "1" || recs[1].Admin.After != "0.5" {
		t.Errorf("ledger = %+v; want capacity 0→200 and factor 1→0.5", recs)
	}
	for _, body := range []string{`{}`, `{"factor":0}`, `{"requests_per_second":-1}`, `{"factor":"x"}`} {
		if code, got := f.do(t, "PUT", "/v1/capacity", body, tokenSecret("admin")); code != http.StatusBadRequest {
			t.Errorf("PUT capacity %s = %d %s; want 400", body, code, got)
		}
	}
}

func TestAlerts(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	blue := f.emitAlert(t, "alice", "blue")
	green := f.emitAlert(t, "bob", "green")
	var list struct {
		Alerts []struct {
			ID    string
			Acked bool
		}
	}
	f.doJSON(t, "GET", "/v1/alerts", "", "read", http.StatusOK, &list)
	if len(list.Alerts) != 2 || list.Alerts[0].ID != green.ID.String() {
		t.Fatalf("alerts = %+v; want bob's then alice's", list)
	}
	f.doJSON(t, "GET", "/v1/alerts?limit=5", "", "blue-read", http.StatusOK, &list)
	if len(list.Alerts) != 1 || list.Alerts[0].ID != blue.ID.String() {
		t.Fatalf("blue's alerts = %+v; want alice's only", list)
	}
	f.doJSON(t, "POST", "/v1/alerts/"+blue.ID.String()+"/ack", "", "blue-write", http.StatusOK, nil)
	f.doJSON(t, "GET", "/v1/alerts", "", "blue-read", http.StatusOK, &list)
	if !list.Alerts[0].Acked {
		t.Errorf("alice's alert is not acknowledged after POST ack")
	}
	for _, tc := range []struct {
		path, token string
		code        int
	}{
		{"/v1/alerts/not-a-uuid/ack", "write", 400},
		{"/v1/alerts/0193a5b4-0000-7000-8000-000000000001/ack", "write", 404},
		{"/v1/alerts/" + green.ID.String() + "/ack", "blue-write", 403},
	} {
		if code, body := f.do(t, "POST", tc.path, "", tokenSecret(tc.token)); code != tc.code {
			t.Errorf("POST %s as %s = %d %s; want %d", tc.path, tc.token, code, body, tc.code)
		}
	}
	if code, _ := f.do(t, "GET", "/v1/alerts?limit=0", "", tokenSecret("read")); code != 400 {
		t.Errorf("limit=0 = %d; want 400", code)
	}
}

func TestUsage(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	var recs []ledger.Record
	for i := range 12 {
		d := f.charge(t, "alice")
		recs = append(recs, ledger.FromDecision(&d, "", f.clock.Now()))
		if i == 5 {
			f.clock.Advance(time.Hour)
		}
	}
	if err := f.led.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var got struct {
		By   string
		Rows []ledger.Row
	}
	f.doJSON(t, "GET", "/v1/usage?subject=alice&by=hour", "", "blue-read", http.StatusOK, &got)
	if len(got.Rows) != 2 || got.Rows[0].Calls != 6 || got.Rows[1].Calls != 6 || got.By != "hour" {
		t.Errorf("hourly usage of alice = %+v; want two hours of 6 calls", got)
	}
	f.doJSON(t, "GET", "/v1/usage?team=blue&by=day", "", "read", http.StatusOK, &got)
	if len(got.Rows) != 1 || got.Rows[0].Calls != 12 {
		t.Errorf("daily usage of blue = %+v; want one day of 12 calls", got)
	}
	for _, tc := range []struct {
		name, query, token string
		code               int
	}{
		{"bad grain", "?by=week", "read", 400},
		{"bad time", "?from=yesterday", "read", 400},
		{"from after to", "?from=2026-11-28T00:00:00Z&to=2026-11-27T00:00:00Z", "read", 400},
		{"team token without team", "", "blue-read", 403},
		{"team token, other subject", "?subject=bob", "blue-read", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := f.do(t, "GET", "/v1/usage"+tc.query, "", tokenSecret(tc.token)); code != tc.code {
				t.Errorf("= %d %s; want %d", code, body, tc.code)
			}
		})
	}
}

func TestConfigStatus(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var got ConfigStatus
	f.doJSON(t, "GET", "/v1/config", "", "read", http.StatusOK, &got)
	if got != testConfigStatus {
		t.Errorf("GET /v1/config = %+v; want %+v", got, testConfigStatus)
	}

	// A server given no status says so rather than inventing one.
	s, err := New(Options{Engine: f.eng})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/config", nil)
	req.RemoteAddr = "127.0.0.1:5000" // no tokens: loopback clients only
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "reloads") {
		t.Errorf("GET /v1/config with no status = %d %s; want 503 saying why", rec.Code, rec.Body.String())
	}
}

func TestPublicEndpoints(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tests := []struct {
		name, path, want string
	}{
		{name: "healthz", path: "/healthz", want: `"ok"`},
		{name: "openapi", path: "/openapi.json", want: `"openapi": "3.0.3"`},
		{name: "dashboard", path: "/dashboard/", want: `id="login-form"`},
		{name: "dashboard script", path: "/dashboard/app.js", want: "sessionStorage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.do(t, "GET", tc.path, "", "")
			if code != 200 || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s = %d, %.80q; want 200 containing %q", tc.path, code, body, tc.want)
			}
		})
	}
}

// TestOpenAPIMatchesRoutes checks that the document lists exactly the
// served routes, each with its scope.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q; want 3.x", doc.OpenAPI)
	}
	s := &Server{}
	want := map[string]string{}
	for _, rt := range s.routeTable() {
		want[strings.ToLower(rt.method)+" "+rt.path] = rt.scope.String()
	}
	got := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			scope, _ := op["x-required-scope"].(string)
			got[method+" "+path] = scope
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: document says scope %q; the route needs %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s is documented but not served", k)
		}
	}
}

// TestErrorsQuoteLittle: an error response quotes a value the client sent
// clipped, whatever its size, and still says what was wanted.
func TestErrorsQuoteLittle(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	long := strings.Repeat("y", 100_000)
	for path, says := range map[string]string{"/v1/usage?by=" + long: "want hour, day or month", "/v1/alerts?limit=" + long: "from 1 to"} {
		code, body := f.do(t, "GET", path, "", tokenSecret("read"))
		if code != http.StatusBadRequest || len(body) > 500 || !strings.Contains(body, "…(+99936 bytes)") || !strings.Contains(body, says) {
			t.Errorf("GET %.40s… = %d %.300s (%d bytes); want 400 with the value clipped", path, code, body, len(body))
		}
	}
}
