package admin

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
)

// FuzzAdminChange sends a fuzzed subject id and body to the profile and
// credit routes. Whatever the input: the server answers with a JSON
// error or success, never 500; a refused call changes nothing; an
// accepted one leaves the subject readable and its Checks decided and
// metered.
func FuzzAdminChange(f *testing.F) {
	seeds := []struct {
		id    string
		route uint8
		body  string
	}{
		{"alice", 0, `{"tier":"standard"}`},
		{"carol", 1, `{"roles":["analyst"],"limits":[{"period":"hour","max":3}]}`},
		{"carol", 1, `{"limits":[{"period":"1ns","max":3}]}`},
		{"newbie", 0, `{"team":"blue","roles":["auditor","auditor"]}`},
		{"\x00", 0, `{}`},
		{"bob", 2, `{"delta":9223372036854775807}`},
		{"bob", 2, `{"delta":-5}`},
		{"team:blue", 2, `{"delta":5}`},
		{"carol", 0, `{"tier":"enterprise","team":"no-such-team"}`},
		{"carol", 1, `{"limits":[{"name":"a","period":"90s","max":1,"actions":[""]}]}`},
	}
	for _, s := range seeds {
		f.Add(s.id, s.route, s.body)
	}
	fx := newFixture(f, fixtureOpts{cfg: Config{AuthFailuresPerMinute: 1 << 20}})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, id string, route uint8, body string) {
		method, suffix := "PUT", "/profile"
		switch route % 3 {
		case 1:
			method = "PATCH"
		case 2:
			method, suffix = "POST", "/credits"
		}
		knownBefore, _ := fx.eng.Known(ctx, id)
		before := fx.dump(t)
		req := httptest.NewRequest(method, "/v1/subjects/"+url.PathEscape(id)+suffix, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1"
		req.Header.Set("Authorization", "Bearer "+tokenSecret("admin"))
		rec := httptest.NewRecorder()
		fx.srv.Handler().ServeHTTP(rec, req)
		code := rec.Code
		if code >= 500 {
			t.Fatalf("%s %q %q = %d %s", method, id, body, code, rec.Body)
		}
		var msg map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &msg); err != nil {
			t.Fatalf("%s %q %q = %d with a body that is not JSON: %q", method, id, body, code, rec.Body)
		}
		if code >= 400 {
			if e, _ := msg["error"].(string); e == "" {
				t.Fatalf("%d without an error message: %s", code, rec.Body)
			}
			if after := fx.dump(t); after != before {
				t.Fatalf("refused %s %q %q changed the state:\nbefore\n%s\nafter\n%s", method, id, body, before, after)
			}
			if knownAfter, _ := fx.eng.Known(ctx, id); knownAfter != knownBefore {
				t.Fatalf("refused %s %q %q made the subject known", method, id, body)
			}
			return
		}
		if err := engine.ValidateSubjectID(id); err != nil {
			t.Fatalf("%s accepted the invalid id %q: %v", method, id, err)
		}
		st, err := fx.eng.Status(ctx, id)
		if err != nil {
			t.Fatalf("Status(%q) after an accepted %s: %v", id, method, err)
		}
		if st.ProfileProblem != "" {
			t.Fatalf("accepted %s %q %q left a profile that does not validate: %s", method, id, body, st.ProfileProblem)
		}
		d, err := fx.eng.ChargeAt(ctx, fx.clock.Now(), engine.Request{Subject: id})
		if err != nil || (d.Allowed && len(d.Limits()) == 0) {
			t.Fatalf("Check of %q after %s %q: err %v, allowed %v with %d limits", id, method, body, err, d.Allowed, len(d.Limits()))
		}
	})
}
