package telemetry

import (
	"os"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// collectorConfig mirrors the parts of the example collector configuration
// that matter for keeping rejections.
type collectorConfig struct {
	Processors struct {
		TailSampling struct {
			Policies []struct {
				Name            string `json:"name"`
				Type            string `json:"type"`
				StringAttribute *struct {
					Key    string   `json:"key"`
					Values []string `json:"values"`
				} `json:"string_attribute"`
			} `json:"policies"`
		} `json:"tail_sampling"`
	} `json:"processors"`
	Service struct {
		Pipelines map[string]struct {
			Receivers  []string `json:"receivers"`
			Processors []string `json:"processors"`
			Exporters  []string `json:"exporters"`
		} `json:"pipelines"`
	} `json:"service"`
}

func TestCollectorConfigKeepsEveryRejection(t *testing.T) {
	data, err := os.ReadFile("otel-collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c collectorConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("otel-collector.yaml: %v", err)
	}
	kept := false
	for _, p := range c.Processors.TailSampling.Policies {
		if p.Type == "string_attribute" && p.StringAttribute != nil && p.StringAttribute.Key == string(keyDecision) &&
			slices.Contains(p.StringAttribute.Values, string(OutcomeDeny)) && slices.Contains(p.StringAttribute.Values, string(OutcomeError)) {
			kept = true
		}
	}
	if !kept {
		t.Errorf("no tail_sampling policy keeps %s in [deny, error]", keyDecision)
	}
	traces, ok := c.Service.Pipelines["traces"]
	if !ok || !slices.Contains(traces.Processors, "tail_sampling") || !slices.Contains(traces.Receivers, "otlp") {
		t.Errorf("traces pipeline = %+v, want otlp through tail_sampling", traces)
	}
}
