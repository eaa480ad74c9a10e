package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
)

func TestSettleRules(t *testing.T) {
	tests := []struct {
		name   string
		settle string // the action's settle value in YAML; empty: none
		want   *engine.SettleRule
		errs   []string // substrings of the expected problems, with their paths
	}{
		{name: "none is the engine's default", want: nil},
		{name: "off", settle: "off", want: &engine.SettleRule{Off: true}},
		{name: "quoted off", settle: `"off"`, want: &engine.SettleRule{Off: true}},
		{name: "full rule", settle: `{refund_on: [503, "5xx", "no_response"], refund_windows: true, usage_header: X-Usage-Tokens}`,
			want: &engine.SettleRule{RefundStatuses: []engine.StatusRange{{From: 503, To: 503}, {From: 500, To: 599}, {}},
				RefundWindows: true, UsageHeader: "x-usage-tokens"}},
		{name: "header only keeps the default refunds", settle: `{usage_header: x-usage}`,
			want: &engine.SettleRule{RefundStatuses: engine.DefaultSettleRule().RefundStatuses, UsageHeader: "x-usage"}},
		{name: "empty refund_on refunds nothing", settle: `{refund_on: []}`, want: &engine.SettleRule{}},
		{name: "bad codes", settle: `{refund_on: [99, 600, "6xx", "timeout"]}`, errs: []string{
			"translate.settle.refund_on[0]: must be a status code", `got "600"`, `got "6xx"`, `refund_on[3]: must be a status code from 100 to 599, a class from "1xx" to "5xx", or "no_response"; got "timeout"`}},
		{name: "wrong type in refund_on", settle: `{refund_on: [[503]]}`, errs: []string{"translate.settle.refund_on[0]: want a status code"}},
		{name: "unknown word", settle: `"on"`, errs: []string{`translate.settle: want off, or a mapping`}},
		{name: "a number", settle: `5`, errs: []string{`translate.settle: want off, or a mapping`}},
		{name: "unknown key", settle: `{refund: [503]}`, errs: []string{"translate.settle.refund: unknown field"}},
		{name: "windows with nothing to refund", settle: `{refund_on: [], refund_windows: true}`, errs: []string{"translate.settle.refund_windows: is true but refund_on is empty"}},
		{name: "bad header name", settle: `{usage_header: "x usage"}`, errs: []string{`translate.settle.usage_header: must be an HTTP header name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			action := "{tokens_per_1000_units: 5}"
			if tt.settle != "" {
				action = "{tokens_per_1000_units: 5, settle: " + tt.settle + "}"
			}
			src := "quota_manager:\n  tiers:\n    standard: {api_calls_per_hour: 10}\n  actions:\n    translate: " + action + "\n"
			f, err := Parse([]byte(src))
			if len(tt.errs) > 0 {
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("Parse: %v, want a ValidationError", err)
				}
				for _, want := range tt.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			cfg, err := f.Engine()
			if err != nil {
				t.Fatalf("Engine: %v", err)
			}
			if got := cfg.Actions["translate"].Settle; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("settle rule %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSettleUsageHeaderNeedsAUnitPrice(t *testing.T) {
	src := "quota_manager:\n  tiers:\n    standard: {api_calls_per_hour: 10}\n  actions:\n    ping: {tokens_per_call: 1, settle: {usage_header: x-usage}}\n"
	_, err := Parse([]byte(src))
	if err == nil || !strings.Contains(err.Error(), "quota_manager.actions.ping.settle.usage_header: is set but tokens_per_1000_units is 0") {
		t.Fatalf("Parse: %v, want a problem naming usage_header", err)
	}
}

func TestDefaultConfigSettlesPricedActionsByDefault(t *testing.T) {
	f, err := Parse(Default())
	if err != nil {
		t.Fatalf("Parse default: %v", err)
	}
	cfg, err := f.Engine()
	if err != nil {
		t.Fatalf("Engine: %v", err)
	}
	for name, a := range cfg.Actions {
		if a.Settle != nil {
			t.Errorf("action %s has settle rule %+v, want none (the engine's default)", name, a.Settle)
		}
	}
}
