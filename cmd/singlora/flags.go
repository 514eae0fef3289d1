package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/internal/fetch"
)

// The CLI grammar every command follows (README, "The command-line tool"):
//   - the same flag means the same thing in every command: --run is a run folder (written by
//     train and demo, read by classify and embed; plot takes run folders as arguments), --out is
//     where a command's output goes (a folder, except merge's, which is a .safetensors file),
//     --method names the method(s), --seed the seed(s), --lr the learning rate(s), --rank and
//     --alpha the adapter's r and α, --epochs a (fractional) number of epochs, --cache the
//     folder singlora fetch fills, --json machine-readable output on stdout;
//   - a list flag takes one value or several, comma-separated or repeated; the old plural
//     spellings (--methods, --seeds, --lrs) remain as aliases; where a command runs one
//     method or seed, a list is an error saying which command takes several;
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
		fmt.Fprintf(w, "singlora %s: %s\n", name, c.Summary)
		if d := strings.TrimSpace(c.Details); d != "" {
			fmt.Fprintf(w, "\n%s\n", d)
		}
		fmt.Fprintln(w, "\nExamples:")
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
	fmt.Fprintln(w, "\nGlobal flag:\n  "+backendUsage)
}

// parseArgs parses args with flags allowed anywhere among the positional arguments (Go's flag
// package stops at the first positional one, so "plot r1 --out p" would read --out as a run),
// and returns the positional arguments. After "--" everything is positional. -h prints the
// command's usage (and returns flag.ErrHelp, which main takes as success); a bad flag is an
// error naming it, without the whole usage, and an unknown one suggests a near spelling.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	out := fs.Output()
	fs.SetOutput(io.Discard) // the flag package prints the usage on every error; -h alone gets it
	defer fs.SetOutput(out)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(out)
				fs.Usage()
				return nil, err
			}
			return nil, flagError(fs, err)
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

// flagError rewrites the flag package's parse error err: an undefined flag suggests the
// singular or plural spelling when fs has it (train --methods → --method); every error points
// to -h.
func flagError(fs *flag.FlagSet, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return fmt.Errorf("%w (see singlora %s -h)", err, fs.Name())
	}
	name = strings.TrimLeft(name, "-")
	for _, near := range []string{name + "s", strings.TrimSuffix(name, "s")} {
		if near != name && fs.Lookup(near) != nil {
			return fmt.Errorf("unknown flag --%s: did you mean --%s? (see singlora %s -h)", name, near, fs.Name())
		}
	}
	return fmt.Errorf("unknown flag --%s (see singlora %s -h for the flags)", name, fs.Name())
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

// oneFlag is a flag that takes exactly one value where other commands take a list under the
// same name (--method, --seed): a comma-separated list, or a second use, is an error that says
// which command takes several (hint).
type oneFlag struct {
	flag.Value // the flag as defined (a string or uint64 flag)
	what, hint string
	given      bool
}

func (o *oneFlag) String() string {
	if o == nil || o.Value == nil { // the flag package's zero-value probe
		return ""
	}
	return o.Value.String()
}

func (o *oneFlag) Set(v string) error {
	if strings.Contains(v, ",") {
		return fmt.Errorf("this command takes one %s, not a list: %s", o.what, o.hint)
	}
	if o.given {
		return fmt.Errorf("given twice (%s, then %s): this command takes one %s: %s", o.Value, v, o.what, o.hint)
	}
	o.given = true
	return o.Value.Set(v)
}

// single makes the flag name, already defined in fs, take exactly one value (see oneFlag); what
// names the value ("method") and hint where several are taken.
func single(fs *flag.FlagSet, name, what, hint string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("single of an undefined flag " + name)
	}
	f.Value = &oneFlag{Value: f.Value, what: what, hint: hint}
}

// isSet reports whether the flag name was given on the command line (under any alias of it).
func isSet(fs *flag.FlagSet, name string) bool {
	want := fs.Lookup(name)
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name || (want != nil && f.Value == want.Value) })
	return found
}

// cacheFlag defines --cache, the folder singlora fetch fills (the USE-Lite model and the demo's
// sentiment data); useCache makes it the cache the command reads.
func cacheFlag(fs *flag.FlagSet) *string {
	return fs.String("cache", fetch.CacheDir(), "the `folder` singlora fetch fills (USE-Lite, the demo data); by default $SINGLORA_CACHE, else .cache\n"+
		"in the singlora repository holding the working directory, else ~/.cache/singlora")
}

// useCache makes the --cache given on the command line the cache of this process and of those
// it starts (sweep's trainers, bench's workloads): the model loader and the demo find the cache
// through fetch.CacheDir, which reads $SINGLORA_CACHE first, so useCache sets that variable (to
// the absolute path). It must run before anything loads a model or data; without --cache the
// environment is left alone.
func useCache(fs *flag.FlagSet, dir string) error {
	if !isSet(fs, "cache") {
		return nil
	}
	if strings.TrimSpace(dir) == "" {
		return errors.New("--cache is empty: give the folder singlora fetch filled, or leave --cache out for the default " + fetch.CacheDir())
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("--cache %s: %w", dir, err)
	}
	return os.Setenv("SINGLORA_CACHE", abs)
}
