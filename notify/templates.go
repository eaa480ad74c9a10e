package notify

import "text/template"

// templateData is what the email templates render.
type templateData struct {
	Alert
	// PeriodAdjective is "daily", "hourly"... for the alert's period.
	PeriodAdjective string
	// UpgradeURL is the upgrade link from config; empty means none.
	UpgradeURL string
}

// emailTemplates holds four templates: user_subject and user_body, which
// speak to the user in the alert's short message and offer the upgrade link, and
// operator_subject and operator_body, which carry every detail.
var emailTemplates = template.Must(template.New("email").Parse(userTemplate + operatorTemplate))

const userTemplate = `
{{- define "user_subject"}}{{.Message}}{{end}}

{{- define "user_body" -}}
Hello,

{{.Message}}
{{if .Max}}
You have used {{.Used}} of {{.Max}} ({{.Percent}}%) of your
{{- with .PeriodAdjective}} {{.}}{{end}} limit "{{.Limit}}".
{{- if not .Reset.IsZero}} It resets at {{.Reset.UTC.Format "2006-01-02 15:04 MST"}}.{{end}}
{{end}}
{{- if or (eq .Kind.String "balance_low") (eq .Kind.String "insufficient_balance")}}
Your token balance is {{.Balance}}.
{{end}}
{{- if .UpgradeURL}}
Upgrade your plan for higher limits: {{.UpgradeURL}}
{{end}}
-- 
quotagate
{{end}}`

const operatorTemplate = `
{{- define "operator_subject"}}[quotagate] {{.Kind}}: {{.Subject}}{{with .Limit}} {{.}}{{end}}{{if .Max}} ({{.Percent}}%){{end}}{{end}}

{{- define "operator_body" -}}
{{.Message}}

Alert:    {{.ID}} ({{.Kind}})
Time:     {{.Time.UTC.Format "2006-01-02T15:04:05Z07:00"}}
Subject:  {{.Subject}}
{{- with .Team}}
Team:     {{.}}{{end}}
{{- with .Tier}}
Tier:     {{.}}{{end}}
{{- if .Limit}}
Limit:    {{.Limit}} ({{.Period}}): {{.Used}} of {{.Max}} used ({{.Percent}}%), {{.Remaining}} remaining
{{- if not .Reset.IsZero}}, resets {{.Reset.UTC.Format "2006-01-02T15:04:05Z07:00"}}{{end}}{{end}}
{{- if not .Window.IsZero}}
Window:   from {{.Window.UTC.Format "2006-01-02T15:04:05Z07:00"}}{{end}}
{{- if or (eq .Kind.String "balance_low") (eq .Kind.String "insufficient_balance")}}
Balance:  {{.Balance}}{{end}}
{{- if eq .Kind.String "anomaly"}}
Requests: {{.Count}} this window, baseline {{.Baseline}} per window{{end}}
{{- if ne .DecisionID.String "00000000-0000-0000-0000-000000000000"}}
Decision: {{.DecisionID}}{{end}}
{{end}}`
