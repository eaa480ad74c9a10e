package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlagSet returns a flag set that reports errors instead of printing
// them, so a bad flag is one line on stderr.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from its QUOTAGATE_* variable (flags win over the environment). It
// returns the names of the flags that were set either way. --help prints
// the command's help on stdout and returns errHelp.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string, help string, stdout io.Writer) (map[string]bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, help, stdout, envName)
			return nil, errHelp
		}
		return nil, exitError{code: 2, err: fmt.Errorf("%s: %w (see quotagate %s --help)", fs.Name(), err, fs.Name())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if set[f.Name] || env == "" || err != nil {
			return
		}
		if v := getenv(env); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = exitError{code: 2, err: fmt.Errorf("%s: %s=%q: %w", fs.Name(), env, v, e)}
			}
			set[f.Name] = true
		}
	})
	return set, err
}

// errHelp signals that --help was answered; run returns nil for it.
var errHelp = errors.New("help requested")

// envName is the QUOTAGATE_* variable of a flag, or "" for flags that have
// none: the per-request flags of check, whose generic names (PATH, USER)
// would pick up unrelated variables.
func envName(flagName string) string {
	switch flagName {
	case "header", "jwt-claims", "body", "body-file", "json", "help",
		"user", "user-header", "path", "method", "host", "action", "workflow",
		"principal", "timeout", "jwt-filter", "jwt-payload-key":
		return ""
	}
	return "QUOTAGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// printHelp prints a command's help text and its flags with their
// defaults and, when env is not nil, their variables (env returns a
// flag's variable, or "" for none).
func printHelp(fs *flag.FlagSet, help string, w io.Writer, env func(flagName string) string) {
	fmt.Fprint(w, help)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return // no empty Flags: section
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		fmt.Fprintf(w, "        %s", usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		if env != nil {
			if v := env(f.Name); v != "" {
				fmt.Fprintf(w, " [$%s]", v)
			}
		}
		fmt.Fprintln(w)
	})
}
