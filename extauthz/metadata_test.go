package extauthz

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// sentMetadata is the dynamic metadata as the proxy reads it: st marshalled
// and unmarshalled into a fresh Struct.
func sentMetadata(t *testing.T, st *structpb.Struct) map[string]any {
	t.Helper()
	b, err := proto.Marshal(st)
	if err != nil {
		t.Fatalf("marshal dynamic metadata: %v", err)
	}
	var got structpb.Struct
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatalf("unmarshal dynamic metadata: %v", err)
	}
	return got.AsMap()
}

// TestMetadataStructWire checks that the hand-written encoding of the
// dynamic metadata decodes to the Struct that structpb would build.
func TestMetadataStructWire(t *testing.T) {
	long := string(make([]byte, 300)) // a length that takes two varint bytes
	tests := []struct {
		name string
		m    Metadata
	}{
		{name: "allow", m: Metadata{DecisionID: decisionID.String(), Decision: "allow", Reason: "ok", Tier: "standard", Action: "translate", Cost: 15}},
		{name: "every field", m: Metadata{DecisionID: "d", Decision: "deny", Reason: "error", Tier: "t", Action: "a", Workflow: "w", FailureMode: "closed", Cost: -3, Units: 9}},
		{name: "only cost", m: Metadata{}},
		{name: "non-ASCII and long values", m: Metadata{Tier: "ünïcode 字", Action: long, Cost: 1 << 53}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[string]any{"cost": float64(tt.m.Cost)}
			for k, v := range map[string]string{"decision_id": tt.m.DecisionID, "decision": tt.m.Decision, "reason": tt.m.Reason,
				"tier": tt.m.Tier, "action": tt.m.Action, "workflow": tt.m.Workflow, "failure_mode": tt.m.FailureMode} {
				if v != "" {
					want[k] = v
				}
			}
			wantStruct, err := structpb.NewStruct(want)
			if err != nil {
				t.Fatal(err)
			}
			st := metadataStruct(&tt.m)
			b, err := proto.Marshal(st)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var got structpb.Struct
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !proto.Equal(&got, wantStruct) {
				t.Errorf("decoded %v, want %v", got.AsMap(), want)
			}
			if size := proto.Size(wantStruct); len(b) != size {
				t.Errorf("encoding is %d bytes, structpb's %d", len(b), size)
			}
		})
	}
}
