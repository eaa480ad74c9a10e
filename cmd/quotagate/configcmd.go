package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
)

const configHelp = `Usage: quotagate config <subcommand> [flags] FILE

Subcommands:
  validate FILE   load FILE (decrypting it in memory if it is age-encrypted),
                  check it and print a summary, or every problem found
  encrypt FILE    encrypt FILE with age, to recipients or with a passphrase
  decrypt FILE    print the decrypted FILE on standard output
  default         print the embedded default configuration

FILE may be - for standard input. An encrypted FILE is decrypted with the age
identity file named by QUOTAGATE_AGE_IDENTITY_FILE, or the passphrase file
named by QUOTAGATE_AGE_PASSPHRASE_FILE. Keys and passphrases are only ever
read from files, never from the command line.

Run "quotagate config encrypt --help" for encrypt's flags.
`

// runConfig runs "quotagate config ...": args are what follows "config".
// It prints nothing on error except validation problems (on stderr, one per
// line); the caller prints the returned error and exits non-zero.
func runConfig(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, configHelp)
		return usageError("config: no subcommand given; want validate, encrypt, decrypt or default")
	}
	opts := loadOptions(env)
	sub, rest := args[0], args[1:]
	switch sub {
	case "validate":
		return configValidate(rest, opts, stdin, stdout, stderr)
	case "encrypt":
		return configEncrypt(rest, stdin, stdout, stderr)
	case "decrypt":
		return configDecrypt(rest, opts, stdin, stdout, stderr)
	case "default":
		if len(rest) == 1 && isHelp(rest[0]) {
			fmt.Fprint(stdout, configDefaultHelp)
			return nil
		}
		if len(rest) > 0 {
			return usageError("config default: takes no arguments, got %q (see quotagate config --help)", rest)
		}
		_, err := stdout.Write(config.Default())
		return err
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, configHelp)
		return nil
	}
	return usageError("config: unknown subcommand %q; want validate, encrypt, decrypt or default (see quotagate config --help)", sub)
}

// Help texts of the config subcommands; configFlags adds their flags.
const (
	configValidateHelp = `Usage: quotagate config validate FILE

Load FILE (- for standard input), decrypting it in memory if it is
age-encrypted, and check it: every problem is printed at once, one per line
with its field path, and the command exits 1; a valid file prints a summary
of what it means, then OK. A FILE that cannot be read exits 2.
`
	configEncryptHelp = `Usage: quotagate config encrypt [flags] FILE

Encrypt FILE (- for standard input) with age, to recipients or with a
passphrase. FILE is validated first unless --no-validate is given.
`
	configDecryptHelp = `Usage: quotagate config decrypt FILE

Print the decrypted FILE (- for standard input) on standard output, with the
identity file named by QUOTAGATE_AGE_IDENTITY_FILE or the passphrase file
named by QUOTAGATE_AGE_PASSPHRASE_FILE.
`
	configDefaultHelp = `Usage: quotagate config default

Print the embedded default configuration (config/default.yaml) on standard
output: a commented starting point.
`
)

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// usageError is a bad-usage error: the process exits 2.
func usageError(format string, args ...any) error {
	return exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// configFlags parses args, allowing flags after the positional arguments
// ("encrypt FILE -o OUT"), and returns the positional arguments. --help
// prints help, then the flags if the subcommand has any, on stdout and
// returns flag.ErrHelp. A bad flag is bad usage (exit 2).
func configFlags(fs *flag.FlagSet, args []string, help string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, help)
				hasFlags := false
				fs.VisitAll(func(*flag.Flag) { hasFlags = true })
				if hasFlags {
					fmt.Fprint(stdout, "\nFlags:\n")
					fs.SetOutput(stdout)
					fs.PrintDefaults()
				}
				return nil, err
			}
			return nil, usageError("%s: %w (see quotagate %s --help)", fs.Name(), err, fs.Name())
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// configInput reads the one FILE argument, or standard input for "-".
func configInput(cmd string, pos []string, stdin io.Reader) (name string, data []byte, err error) {
	if len(pos) != 1 {
		return "", nil, usageError("%s: want one FILE (- for standard input), got %d arguments (see quotagate %s --help)", cmd, len(pos), cmd)
	}
	if pos[0] == "-" {
		data, err = config.ReadAll(stdin)
		if err != nil {
			return "", nil, fmt.Errorf("%s: standard input: %w", cmd, err)
		}
		return "standard input", data, nil
	}
	data, err = config.ReadFile(pos[0])
	if errors.Is(err, config.ErrTooLarge) {
		return "", nil, fmt.Errorf("%s: %s: %w", cmd, pos[0], err)
	}
	if err != nil {
		// A FILE that cannot be read is bad usage, as the README says.
		return "", nil, usageError("%s: %w; name an existing, readable file or - for standard input", cmd, err)
	}
	return pos[0], data, nil
}

func configValidate(args []string, opts config.LoadOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
	pos, err := configFlags(fs, args, configValidateHelp, stdout)
	if err != nil {
		return configHelpOK(err)
	}
	name, data, err := configInput(fs.Name(), pos, stdin)
	if err != nil {
		return err
	}
	encrypted := config.IsEncrypted(data)
	f, err := config.LoadData(name, data, opts)
	if err != nil {
		return configProblems(fs.Name(), name, err, stderr)
	}
	if encrypted {
		name += " (age-encrypted)"
	}
	return configSummary(stdout, stderr, name, f)
}

// configProblems prints each validation problem on its own line and
// returns a short error; other errors are returned as they are.
func configProblems(cmd, name string, err error, stderr io.Writer) error {
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	for _, p := range ve.Problems {
		fmt.Fprintf(stderr, "%s: %s\n", name, p)
	}
	return fmt.Errorf("%s: %s: %d problem(s), listed above", cmd, name, len(ve.Problems))
}

// configSummary prints what a valid configuration means, then OK.
func configSummary(stdout, stderr io.Writer, name string, f *config.File) error {
	cfg, err := f.Engine()
	if err != nil {
		return err
	}
	qm := &f.QuotaManager
	fmt.Fprintf(stdout, "%s\ntiers (%d):\n", name, len(cfg.Tiers))
	tiers := slices.SortedFunc(maps.Keys(cfg.Tiers), func(a, b engine.Tier) int {
		return cmp.Or(cmp.Compare(cfg.Tiers[a].Priority, cfg.Tiers[b].Priority), cmp.Compare(a, b))
	})
	for _, t := range tiers {
		fmt.Fprintf(stdout, "  %-12s %-8s %s\n", t, cfg.Tiers[t].Priority, configTierLine(cfg.Tiers[t]))
	}
	if qm.DefaultTier != "" {
		fmt.Fprintf(stdout, "default tier: %s; unknown subjects: %s\n", qm.DefaultTier, qm.UnknownSubjects)
	}
	actions := []string{"none"}
	for i, a := range slices.Sorted(maps.Keys(cfg.Actions)) {
		ac := cfg.Actions[a]
		s := fmt.Sprintf("%s %d tokens/1000 %s", a, ac.PerThousand, cmp.Or(ac.Unit, "units"))
		if ac.PerCall > 0 {
			s += fmt.Sprintf(" + %d per call", ac.PerCall)
		}
		actions = append(actions[:i], s)
	}
	fmt.Fprintf(stdout, "actions: %s\n", strings.Join(actions, ", "))
	configRouteActions(stdout, stderr, f)
	if a := qm.Alerts; a.Enabled {
		fmt.Fprintf(stdout, "alerts: at %d%% of a limit, to %s\n", a.ThresholdPercentage, cmp.Or(strings.Join(a.Channels, ", "), "no channel"))
	}
	fmt.Fprintf(stdout, "users %d, roles %d, workflows %d, teams %d, routes %d, api keys %d\n",
		len(qm.Users), len(qm.Roles), len(qm.Workflows), len(qm.Teams), len(f.Routes.Rules), len(f.APIKeys()))
	fmt.Fprintf(stdout, "identity: %s\n", strings.Join(f.Identity.Sources, ", "))
	if w := exposureWarning(f, f.Server.GRPCAddr); w != "" {
		fmt.Fprintf(stderr, "WARNING: %s\n", w)
	} else if f.Identity.Header.Trusted {
		fmt.Fprintf(stderr, "warning: identity.header %q is trusted: only safe if Envoy sets it after authenticating the caller\n", f.Identity.Header.Name)
	}
	_, err = fmt.Fprintln(stdout, "OK")
	return err
}

// configRouteActions lists the actions the routes table names and flags
// those without a price: a typo there is refused at run time (or priced as
// unknown_actions.price_as), so it is better seen now.
func configRouteActions(stdout, stderr io.Writer, f *config.File) {
	uses := f.RouteActions()
	if len(uses) == 0 {
		return
	}
	fmt.Fprintf(stdout, "route actions (routes.default: %s; unknown actions: %s):\n", f.Routes.Default, unknownPolicy(f))
	for _, u := range uses {
		state := "priced"
		switch {
		case !u.Priced && u.Feature:
			state = "NO PRICE: free (listed in features only)"
		case !u.Priced:
			state = "NO PRICE and in no features list: unknown, " + unknownPolicy(f)
		}
		fmt.Fprintf(stdout, "  %-16s routes %v: %s\n", u.Action, u.Routes, state)
		if !u.Priced {
			fmt.Fprintf(stderr, "warning: routes %v name action %q, which quota_manager.actions does not price; add it there, or fix the route\n", u.Routes, u.Action)
		}
	}
}

func unknownPolicy(f *config.File) string {
	if ua := f.QuotaManager.UnknownActions; ua.Policy == "price" {
		return "priced as " + ua.PriceAs
	}
	return "refused (403 unknown_action)"
}

func configTierLine(tc engine.TierConfig) string {
	var parts []string
	for _, l := range tc.Limits {
		unit := ""
		if l.Unit != engine.UnitCalls {
			unit = " " + l.Unit.String()
		}
		s := fmt.Sprintf("%s %d%s/%s", cmp.Or(l.Name, "limit"), l.Max, unit, l.Period)
		if len(l.Actions) > 0 {
			s += " [" + strings.Join(l.Actions, " ") + "]"
		}
		parts = append(parts, s)
	}
	switch g := tc.Tokens; {
	case g.Unlimited:
		parts = append(parts, "tokens unlimited")
	case g.Amount > 0:
		parts = append(parts, fmt.Sprintf("tokens %d/%s", g.Amount, g.Period))
	}
	if tc.Features == nil {
		parts = append(parts, "features all")
	} else {
		parts = append(parts, "features "+cmp.Or(strings.Join(tc.Features, " "), "none"))
	}
	return strings.Join(parts, "; ")
}

// configRecipients is a repeatable --recipient flag.
type configRecipients []string

func (r *configRecipients) String() string { return strings.Join(*r, ",") }

func (r *configRecipients) Set(v string) error {
	*r = append(*r, v)
	return nil
}

func configEncrypt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config encrypt", flag.ContinueOnError)
	var opts config.EncryptOptions
	fs.Var((*configRecipients)(&opts.Recipients), "recipient", "encrypt to this age public key (age1...); repeatable")
	fs.StringVar(&opts.RecipientsFile, "recipients-file", "", "encrypt to the age public keys in this file, one per line")
	fs.StringVar(&opts.PassphraseFile, "passphrase-file", "", "encrypt with the passphrase in this file (scrypt) instead of to recipients")
	fs.IntVar(&opts.ScryptWorkFactor, "scrypt-work-factor", 0, "log2 of the scrypt cost for --passphrase-file; 0 means age's default, 18")
	fs.BoolVar(&opts.Armor, "armor", false, "write ASCII armor instead of binary")
	fs.BoolVar(&opts.Armor, "a", false, "short for --armor")
	out := fs.String("o", "", "write to this file (atomically, mode 0600) instead of standard output")
	noValidate := fs.Bool("no-validate", false, "encrypt even if the configuration does not validate")
	pos, err := configFlags(fs, args, configEncryptHelp, stdout)
	if err != nil {
		return configHelpOK(err)
	}
	name, data, err := configInput(fs.Name(), pos, stdin)
	if err != nil {
		return err
	}
	defer clear(data)
	if config.IsEncrypted(data) {
		return fmt.Errorf("config encrypt: %s is already age-encrypted", name)
	}
	if !*noValidate {
		if _, err := config.ParseWith(data, checkComponents); err != nil {
			return configProblems(fs.Name(), name, err, stderr)
		}
	}
	var buf bytes.Buffer
	if err := config.Encrypt(&buf, data, opts); err != nil {
		return err
	}
	if *out == "" || *out == "-" {
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	if err := configWriteFile(*out, buf.Bytes()); err != nil {
		return fmt.Errorf("config encrypt: %w", err)
	}
	if name != "standard input" && name != *out {
		fmt.Fprintf(stderr, "wrote %s; %s still holds the plaintext: delete it once \"quotagate config validate %s\" passes\n", *out, name, *out)
	}
	return nil
}

// configWriteFile replaces path with data atomically: a reader (or the
// config watcher) sees the old file or the new one, never a partial one.
// The temporary file holds ciphertext only.
func configWriteFile(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func configDecrypt(args []string, opts config.LoadOptions, stdin io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("config decrypt", flag.ContinueOnError)
	pos, err := configFlags(fs, args, configDecryptHelp, stdout)
	if err != nil {
		return configHelpOK(err)
	}
	name, data, err := configInput(fs.Name(), pos, stdin)
	if err != nil {
		return err
	}
	if !config.IsEncrypted(data) {
		return fmt.Errorf("config decrypt: %s is not age-encrypted; there is nothing to decrypt", name)
	}
	plain, err := config.Decrypt(data, opts)
	if err != nil {
		return err
	}
	defer clear(plain)
	_, err = stdout.Write(plain)
	return err
}

// configHelpOK turns an answered --help into success.
func configHelpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
