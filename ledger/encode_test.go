package ledger

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestAppendRecord(t *testing.T) {
	full := charge("alice", "ops", "standard", "translate", t0.Add(123456789*time.Nanosecond), true, 120, 7)
	full.Seq, full.Workflow, full.Reason = 42, "nightly", "ok"
	admin, _ := NewAdminChange(t0, "root", "team:ops", "tier", `{"tier":"a"}`, "b\nc")
	spill := Record{ID: uuid.Must(uuid.NewV7()), Time: t0, Kind: KindSpill, Subject: "bob", Charged: 9,
		Spill: &Spill{Records: 3, Calls: 2, Units: 5, Tokens: 9, Rejections: 1, First: t0, Last: t0.Add(time.Second)}}
	settled := Record{ID: uuid.Must(uuid.NewV7()), Time: t0.Add(time.Minute), Kind: KindSettlement, Subject: "bob", Units: 10,
		Charged: 4, Allowed: true, Reason: "adjust", Settlement: &Settlement{Settles: uuid.Must(uuid.NewV7()), DecidedAt: t0,
			Outcome: "adjust", Status: 200, Charged: 5, ActualUnits: 30, Extra: 10, Owed: 6, WindowsRefunded: true}}
	spillSettled := spill
	spillSettled.Spill = &Spill{Records: 1, Units: -3, Tokens: -5, Refunded: 5, First: t0, Last: t0}
	odd := charge("quote\" back\\ ctl\x01\x1f tab\t nl\n <html>&", "ключ", "🙂", "bad\xffutf8", t0, false, 0, 0)
	tests := []struct {
		name  string
		rec   Record
		exact bool // byte-identical to encoding/json (no HTML characters)
	}{
		{name: "charge", rec: full, exact: true},
		{name: "rejection", rec: charge("a", "", "", "", t0, false, 0, 0), exact: true},
		{name: "admin", rec: admin, exact: true},
		{name: "spill", rec: spill, exact: true},
		{name: "settlement", rec: settled, exact: true},
		{name: "refund without response", rec: Record{Kind: KindSettlement, Settlement: &Settlement{Outcome: "refund", Refunded: 7}}, exact: true},
		{name: "spill of settlements", rec: spillSettled, exact: true},
		{name: "odd strings", rec: odd},
		{name: "zero", rec: Record{}, exact: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rec
			normalizeTimes(&r)
			got := appendRecord(nil, &r)
			want, err := json.Marshal(&r)
			if err != nil {
				t.Fatal(err)
			}
			if tc.exact && string(got) != string(want) {
				t.Fatalf("appendRecord =\n%s\nencoding/json =\n%s", got, want)
			}
			var back, viaJSON Record
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("decode %s: %v", got, err)
			}
			if err := json.Unmarshal(want, &viaJSON); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, viaJSON) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", back, viaJSON)
			}
		})
	}
}
