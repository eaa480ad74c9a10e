package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/quotagate/quotagate/ledger"
)

const ledgerHelp = `Usage: quotagate ledger verify (--ledger DSN | --data-dir DIR)

Walks the ledger's hash chain from its oldest record to its newest and
prints the first record that was altered or removed. Exits 0 when the chain
is intact and 1 otherwise.

DSN is a SQLite file path or a postgres:// URL; --data-dir DIR reads the
server's DIR/ledger.db.
`

// runLedger runs "quotagate ledger ...": args are what follows "ledger".
func runLedger(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, ledgerHelp)
		if len(args) == 0 {
			return exitError{code: 2, err: errors.New("ledger: no subcommand given; want verify")}
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return nil
		}
		return exitError{code: 2, err: fmt.Errorf("ledger: unknown subcommand %q; want verify", args[0])}
	}
	var err error
	fs := newFlagSet("ledger verify")
	dsn := fs.String("ledger", "", "the ledger: a SQLite file path or a postgres:// URL")
	dataDir := fs.String("data-dir", "", "the server's data `directory`; its ledger.db is read when --ledger is not given")
	if _, err = parseFlags(fs, args[1:], getenv, ledgerHelp, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return exitError{code: 2, err: fmt.Errorf("ledger verify: unexpected arguments %q", fs.Args())}
	}
	if *dsn, err = ledgerDSN("ledger verify", *dsn, *dataDir); err != nil {
		return err
	}
	l, err := ledger.Open(ctx, *dsn, ledger.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	res, err := l.Verify(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.String())
	if !res.OK {
		return exitError{code: 1, err: fmt.Errorf("ledger verify: the chain is broken at record seq %d", res.BadSeq)}
	}
	return nil
}

const usageHelp = `Usage: quotagate usage (--ledger DSN | --data-dir DIR) [--subject S | --team T | --tier T]
                       [--from TIME] [--to TIME] [--by hour|day|month]
                       [--format table|csv|json] [--prices tier=price,... | --billing --config FILE]

Prints calls, units, tokens and rejections per period (UTC) from the
ledger's rollups. With --prices (or --billing, which takes the prices
from the configuration's ledger.prices) it prints the billing export
instead: tokens charged per period, subject and tier, times the tier's price.

TIME is RFC 3339 (2026-05-01T00:00:00Z), a date (2026-05-01) or a month
(2026-05). --from defaults to the start of the current month, --to to now.
`

// usageFlags are the parsed flags of "quotagate usage".
type usageFlags struct {
	dsn    string
	q      ledger.Query
	format string
	prices map[string]float64
}

// runUsage runs "quotagate usage": args are what follows "usage".
func runUsage(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f, err := parseUsageFlags(args, getenv, stdout, time.Now())
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, f.dsn, ledger.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	if f.prices != nil {
		rows, err := l.Billing(ctx, f.q, f.prices)
		if err != nil {
			return err
		}
		return writeBilling(stdout, f.format, f.q.By, rows)
	}
	rows, err := l.Usage(ctx, f.q)
	if err != nil {
		return err
	}
	return writeUsage(stdout, f.format, f.q.By, rows)
}

func parseUsageFlags(args []string, getenv func(string) string, stdout io.Writer, now time.Time) (usageFlags, error) {
	fs := newFlagSet("usage")
	var f usageFlags
	fs.StringVar(&f.dsn, "ledger", "", "the ledger: a SQLite file path or a postgres:// URL")
	dataDir := fs.String("data-dir", "", "the server's data `directory`; its ledger.db is read when --ledger is not given")
	configPath := fs.String("config", "", "configuration `file` whose ledger.prices --billing uses")
	billing := fs.Bool("billing", false, "print the billing export at the configuration's ledger.prices")
	fs.StringVar(&f.q.Subject, "subject", "", "only this subject")
	fs.StringVar(&f.q.Team, "team", "", "only this team")
	fs.StringVar(&f.q.Tier, "tier", "", "only this tier")
	from := fs.String("from", "", "start `TIME` (default: start of this month)")
	to := fs.String("to", "", "end `TIME`, exclusive (default: now)")
	by := fs.String("by", "day", "period: hour, day or month")
	fs.StringVar(&f.format, "format", "table", "output: table, csv or json")
	prices := fs.String("prices", "", "billing export at these prices per token: `tier=price,...`")
	if _, err := parseFlags(fs, args, getenv, usageHelp, stdout); err != nil {
		return f, err
	}
	bad := func(err error) (usageFlags, error) { return f, exitError{code: 2, err: fmt.Errorf("usage: %w", err)} }
	if fs.NArg() > 0 {
		return bad(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	var err error
	if f.dsn, err = ledgerDSN("usage", f.dsn, *dataDir); err != nil {
		return f, err
	}
	if f.q.By, err = ledger.ParseGrain(*by); err != nil {
		return bad(fmt.Errorf("--by: %w", err))
	}
	switch f.format {
	case "table", "csv", "json":
	default:
		return bad(fmt.Errorf("--format %q: want table, csv or json", f.format))
	}
	f.q.From = ledger.GrainMonth.Start(now)
	if *from != "" {
		if f.q.From, err = parseTime(*from); err != nil {
			return bad(fmt.Errorf("--from: %w", err))
		}
	}
	f.q.To = now
	if *to != "" {
		if f.q.To, err = parseTime(*to); err != nil {
			return bad(fmt.Errorf("--to: %w", err))
		}
	}
	if !f.q.From.Before(f.q.To) {
		return bad(fmt.Errorf("--from %s is not before --to %s", f.q.From.Format(time.RFC3339), f.q.To.Format(time.RFC3339)))
	}
	switch {
	case *prices != "":
		if f.prices, err = parsePrices(*prices); err != nil {
			return bad(fmt.Errorf("--prices: %w", err))
		}
	case *billing:
		if f.prices, err = configPrices(*configPath, getenv); err != nil {
			return f, err
		}
	}
	return f, nil
}

// ledgerDSN returns the ledger to open: dsn, else the data directory's
// ledger.db, which must exist (a report on a new, empty ledger would only
// hide a wrong directory).
func ledgerDSN(cmd, dsn, dataDir string) (string, error) {
	if dsn != "" {
		return dsn, nil
	}
	if dataDir == "" {
		return "", exitError{code: 2, err: fmt.Errorf("%s: no ledger given: pass --ledger DSN or the server's --data-dir DIR", cmd)}
	}
	path := filepath.Join(dataDir, "ledger.db")
	if _, err := os.Stat(path); err != nil {
		return "", exitError{code: 2, err: fmt.Errorf("%s: no ledger in data directory %s: %w (is it the directory quotagate serve --data-dir used?)", cmd, dataDir, err)}
	}
	return path, nil
}

// configPrices returns the ledger.prices of the configuration at path.
func configPrices(path string, getenv func(string) string) (map[string]float64, error) {
	if path == "" {
		return nil, exitError{code: 2, err: errors.New("usage: --billing needs --config FILE for its ledger.prices (or pass --prices tier=price,...)")}
	}
	file, _, err := loadConfig(path, getenv)
	if err != nil {
		return nil, err
	}
	prices := map[string]float64{}
	for tier, p := range file.Ledger.Prices {
		prices[tier] = p
	}
	return prices, nil
}

// parseTime accepts RFC 3339, a date or a month, all in UTC.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339 (2026-05-01T00:00:00Z), a date (2026-05-01) or a month (2026-05)", s)
}

// parsePrices parses "tier=price,tier=price".
func parsePrices(s string) (map[string]float64, error) {
	prices := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		tier, price, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || tier == "" {
			return nil, fmt.Errorf("%q: want tier=price", part)
		}
		p, err := strconv.ParseFloat(price, 64)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%q: price must be a number >= 0", part)
		}
		prices[tier] = p
	}
	return prices, nil
}

// periodLayout formats a period start for people.
func periodLayout(g ledger.Grain) string {
	switch g {
	case ledger.GrainMonth:
		return "2006-01"
	case ledger.GrainDay:
		return "2006-01-02"
	}
	return "2006-01-02T15:04Z"
}

func writeUsage(w io.Writer, format string, by ledger.Grain, rows []ledger.Row) error {
	if format == "json" {
		if rows == nil {
			rows = []ledger.Row{}
		}
		return writeJSON(w, rows)
	}
	// Units and tokens are settled; refunded, extra and owed say how
	// settlements moved them (new columns go last, for scripts).
	header := []string{"period", "calls", "units", "tokens", "rejections", "refunded", "extra", "owed"}
	table := make([][]string, len(rows))
	for i, r := range rows {
		table[i] = []string{r.Period.Format(periodLayout(by)), itoa(r.Calls), itoa(r.Units), itoa(r.Tokens), itoa(r.Rejections),
			itoa(r.Refunded), itoa(r.Extra), itoa(r.Owed)}
	}
	return writeTable(w, format, header, table)
}

func writeBilling(w io.Writer, format string, by ledger.Grain, rows []ledger.BillingRow) error {
	if format == "json" {
		if rows == nil {
			rows = []ledger.BillingRow{}
		}
		return writeJSON(w, rows)
	}
	header := []string{"period", "subject", "tier", "tokens", "price", "amount", "refunded", "extra", "owed", "owed_amount"}
	table := make([][]string, len(rows))
	var total, owed float64
	for i, r := range rows {
		total += r.Amount
		owed += r.OwedAmount
		table[i] = []string{r.Period.Format(periodLayout(by)), r.Subject, r.Tier, itoa(r.Tokens),
			strconv.FormatFloat(r.Price, 'f', -1, 64), strconv.FormatFloat(r.Amount, 'f', 4, 64),
			itoa(r.Refunded), itoa(r.Extra), itoa(r.Owed), strconv.FormatFloat(r.OwedAmount, 'f', 4, 64)}
	}
	if format == "table" {
		table = append(table, []string{"total", "", "", "", "", strconv.FormatFloat(total, 'f', 4, 64),
			"", "", "", strconv.FormatFloat(owed, 'f', 4, 64)})
	}
	return writeTable(w, format, header, table)
}

func writeTable(w io.Writer, format string, header []string, rows [][]string) error {
	if format == "csv" {
		cw := csv.NewWriter(w)
		cw.Write(header)
		cw.WriteAll(rows)
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(header, "\t"))+"\t")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
