package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUnknownActions(t *testing.T) {
	base := func(ua UnknownActions) testConfig {
		cfg := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{
			"standard":   {Priority: PriorityMedium, Tokens: TokenGrant{Amount: 1000, Period: Period{Calendar: "month", Every: 30 * 24 * time.Hour}}},
			"enterprise": {Priority: PriorityHigh, Features: []string{"translate", "ping"}},
		}, DefaultTier: "standard",
		}}
		cfg.Actions = map[string]ActionConfig{"translate": {PerThousand: 5}, "summarize": {PerThousand: 2}}
		cfg.Tiers["standard"] = TierConfig{Priority: PriorityMedium, Tokens: cfg.Tiers["standard"].Tokens,
			Limits: []LimitConfig{{Name: "translate-words", Max: 20000, Period: Period{Calendar: "day", Every: 24 * time.Hour}, Unit: UnitUnits, Actions: []string{"translate"}}}}
		cfg.UnknownActions = ua
		return cfg
	}
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name        string
		policy      UnknownActions
		action      string
		units       int64
		wantAllowed bool
		wantReason  Reason
		wantAction  string
		wantUnknown string
		wantCost    int64
	}{
		{name: "priced action", action: "translate", units: 3000, wantAllowed: true, wantAction: "translate", wantCost: 15},
		{name: "no action", wantAllowed: true},
		{name: "a typo is refused", action: "transl8", units: 3000, wantReason: ReasonUnknownAction, wantUnknown: "transl8"},
		{name: "case matters", action: "Translate", units: 3000, wantReason: ReasonUnknownAction, wantUnknown: "Translate"},
		{name: "a feature without a price is free, not unknown", action: "ping", units: 3000, wantAllowed: true, wantAction: "ping"},
		{name: "a hostile name is cut", action: long, wantReason: ReasonUnknownAction, wantUnknown: long[:maxUnknownActionLen]},
		{name: "priced as a named action", policy: UnknownActions{Mode: UnknownActionPrice, PriceAs: "translate"},
			action: "transl8", units: 3000, wantAllowed: true, wantAction: "translate", wantUnknown: "transl8", wantCost: 15},
		{name: "priced as a named action and its limits", policy: UnknownActions{Mode: UnknownActionPrice, PriceAs: "translate"},
			action: "transl8", units: 30000, wantReason: ReasonRequestTooLarge, wantAction: "translate", wantUnknown: "transl8", wantCost: 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, base(tt.policy))
			d := chargeAt(t, e, t0, Request{Subject: "alice", Action: tt.action, Units: tt.units})
			if d.Allowed != tt.wantAllowed || d.Reason != tt.wantReason || d.Action != tt.wantAction ||
				d.UnknownAction != tt.wantUnknown || d.Cost != tt.wantCost {
				t.Fatalf("allowed %v reason %v action %q unknown %.20q cost %d; want %v %v %q %.20q %d", d.Allowed, d.Reason, d.Action,
					d.UnknownAction, d.Cost, tt.wantAllowed, tt.wantReason, tt.wantAction, tt.wantUnknown, tt.wantCost)
			}
			if d.Reason == ReasonUnknownAction {
				if d.Message != defaultUnknownAction || strings.Contains(d.Message, tt.action) || d.Charged != 0 {
					t.Errorf("message %q charged %d: want the neutral message, naming nothing, and no charge", d.Message, d.Charged)
				}
				// Nothing was charged: the balance is whole.
				ok := chargeAt(t, e, t0, Request{Subject: "alice", Action: "translate", Units: 1000})
				if !ok.Allowed || ok.Balance != 995 {
					t.Errorf("after the refusal: allowed %v balance %d, want 995", ok.Allowed, ok.Balance)
				}
			}
		})
	}
}

func TestUnknownActionsValidate(t *testing.T) {
	tests := []struct {
		name string
		ua   UnknownActions
		want string
	}{
		{name: "price as nothing", ua: UnknownActions{Mode: UnknownActionPrice}, want: `unknown_actions.price_as: unknown action ""`},
		{name: "price as an unpriced action", ua: UnknownActions{Mode: UnknownActionPrice, PriceAs: "chat"}, want: `unknown_actions.price_as: unknown action "chat"`},
		{name: "deny with a price", ua: UnknownActions{PriceAs: "translate"}, want: `unknown_actions.price_as: is "translate" but the policy is deny`},
		{name: "bad mode", ua: UnknownActions{Mode: 7}, want: "unknown_actions.policy: unknown policy UnknownActionMode(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := oneTier()
			cfg.Actions = map[string]ActionConfig{"translate": {PerThousand: 5}}
			cfg.UnknownActions = tt.ua
			err := cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestUnknownActionModeNames(t *testing.T) {
	for _, m := range []UnknownActionMode{UnknownActionDeny, UnknownActionPrice} {
		if got, err := ParseUnknownActionMode(m.String()); err != nil || got != m {
			t.Errorf("ParseUnknownActionMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseUnknownActionMode("free"); err == nil {
		t.Error("ParseUnknownActionMode(free) succeeded")
	}
	if ReasonUnknownAction.String() != "unknown_action" || ReasonNoRoute.String() != "no_route" {
		t.Errorf("names %q %q", ReasonUnknownAction, ReasonNoRoute)
	}
}
