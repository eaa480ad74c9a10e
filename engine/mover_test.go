package engine

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// moverAuthority is a fakeAuthority that records state moves and fails
// them with err when set.
type moverAuthority struct {
	*fakeAuthority
	moves []string
	err   error
}

func (m *moverAuthority) MoveState(_ context.Context, subject, from, to string) error {
	if m.err != nil {
		return m.err
	}
	m.moves = append(m.moves, subject+":"+from+">"+to)
	return nil
}

func TestSetProfileMovesState(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		profile Profile
		fail    bool
		want    []string
	}{
		{name: "joins a team with a balance", subject: "cy", profile: Profile{Team: "ops"}, want: []string{"cy:cy>team:ops"}},
		{name: "leaves it for a team without a balance", subject: "ann", profile: Profile{Team: "dev"}, want: []string{"ann:team:ops>ann"}},
		{name: "same team", subject: "ann", profile: Profile{Team: "ops", Tier: "free"}, want: nil},
		{name: "tier only", subject: "cy", profile: Profile{Tier: "free"}, want: nil},
		{name: "move fails: nothing changes", subject: "cy", profile: Profile{Team: "ops"}, fail: true, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
			m := &moverAuthority{fakeAuthority: newFakeAuthority()}
			if tc.fail {
				m.err = errors.New("authority down")
			}
			cfg := authorityConfig(m, &now)
			cfg.Teams["dev"] = TeamConfig{}
			e, err := New(cfg.Rules, cfg.Options)
			if err != nil {
				t.Fatal(err)
			}
			err = e.SetProfile(context.Background(), tc.subject, tc.profile)
			if tc.fail {
				if err == nil {
					t.Fatal("SetProfile succeeded while the move failed")
				}
				st, serr := e.Status(context.Background(), tc.subject)
				if serr != nil || st.Team != "" {
					t.Fatalf("after a refused change the subject's team is %q (%v), want none", st.Team, serr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.moves, tc.want) {
				t.Fatalf("moves %q, want %q", m.moves, tc.want)
			}
		})
	}
}

func TestReloadMovesState(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	m := &moverAuthority{fakeAuthority: newFakeAuthority()}
	cfg := authorityConfig(m, &now)
	e, err := New(cfg.Rules, cfg.Options)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Teams = map[string]TeamConfig{"ops": {Members: []string{"bob"}, Tokens: TokenGrant{Amount: 50, Period: month}}}
	m.err = errors.New("authority down")
	if err := e.Reload(cfg.Rules); err == nil {
		t.Fatal("Reload succeeded while the moves failed")
	}
	if got := e.Rules().Teams["ops"].Members; !slices.Equal(got, []string{"ann"}) {
		t.Fatalf("after a refused reload team ops has %q, want [ann]", got)
	}
	m.err = nil
	if err := e.Reload(cfg.Rules); err != nil {
		t.Fatal(err)
	}
	slices.Sort(m.moves)
	if want := []string{"ann:team:ops>ann", "bob:bob>team:ops"}; !slices.Equal(m.moves, want) {
		t.Fatalf("moves %q, want %q", m.moves, want)
	}
}
