package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// The CLI grammar every command follows (README, "The command-line tool"):
//   - the same flag means the same thing in every command: --run is a run folder (written by
//     train and demo, read by classify, embed and plot), --out is where a command's output goes,
//     --method names one or more methods, --seed one or more seeds, --cache the fetched
//     material, --json machine-readable output;
//   - a list flag takes one value or several, comma-separated or repeated;
//   - flags may come before or after positional arguments (a lone "--" ends the flags);
//   - every command checks its positional argument count;
//   - "-h" shows the command's summary, examples and flags.

// newFlags returns the flag set of the registered command name, whose -h prints the command's
// summary, its examples and its flags.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs.Output(), name, fs) }
	return fs
}

func printCommandUsage(w io.Writer, name string, fs *flag.FlagSet) {
	if c, ok := commands[name]; ok {
		fmt.Fprintf(w, "singlora %s: %s\n\nExamples:\n", name, c.Summary)
		for _, line := range strings.Split(strings.TrimSpace(c.Usage), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	} else {
		fmt.Fprintln(w, "\n(no flags)")
	}
}

// parseArgs parses args with flags allowed anywhere among the positional arguments (Go's flag
// package stops at the first positional one, so "plot r1 --out p" would read --out as a run),
// and returns the positional arguments. After "--" everything is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantArgs checks the number of positional arguments is in [lo, hi] (hi < 0: no upper bound);
// what describes them for the error.
func wantArgs(args []string, lo, hi int, what string) error {
	if len(args) >= lo && (hi < 0 || len(args) <= hi) {
		return nil
	}
	if hi == 0 {
		return fmt.Errorf("unexpected arguments %q: this command takes flags only (see -h)", args)
	}
	return fmt.Errorf("want %s, got %d arguments %q (see -h)", what, len(args), args)
}

// listFlag is a flag taking one or more values, comma-separated or repeated; the first explicit
// use replaces the default.
type listFlag struct {
	values []string
	set    bool
}

func newListFlag(def ...string) *listFlag { return &listFlag{values: def} }

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.values = append(l.values, p)
		}
	}
	return nil
}

// alias registers old as another name of the flag new (kept so that scripts written for an older
// spelling keep working; -h lists it as such).
func alias(fs *flag.FlagSet, old, new string) {
	f := fs.Lookup(new)
	if f == nil {
		panic("alias of an undefined flag " + new)
	}
	fs.Var(f.Value, old, "the same as --"+new)
}
