// Command singlora fine-tunes transformers with SingLoRA and its baselines (LoRA, LoRA+, DoRA),
// and saves, inspects, merges and exports adapters. Run "singlora help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/singlora/singlora/backend"
)

// command is one subcommand of the singlora binary. Each lives in its own file and registers
// itself in init().
type command struct {
	Name    string
	Summary string
	Details string // optional: more about the command, shown by -h between the summary and the examples
	Usage   string // one or more example lines
	Run     func(args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.Name]; dup {
		panic("duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

func usage() {
	fmt.Fprintln(os.Stderr, "singlora: parameter-efficient fine-tuning with SingLoRA, LoRA, LoRA+ and DoRA")
	fmt.Fprintln(os.Stderr, "\nUsage: singlora <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(os.Stderr, "\nExamples:")
	for _, n := range names {
		for _, line := range strings.Split(strings.TrimSpace(commands[n].Usage), "\n") {
			if line != "" {
				fmt.Fprintf(os.Stderr, "  %s\n", strings.TrimSpace(line))
			}
		}
	}
	fmt.Fprintln(os.Stderr, "\nFlags may come before or after a command's arguments (\"--\" ends them); list flags (--method, --seed,\n"+
		"--lr where a command runs several) take values comma-separated or repeated.\n"+
		"Run \"singlora <command> -h\" (or \"singlora help <command>\") for a command's summary, examples and flags.")
	fmt.Fprintln(os.Stderr, "\nGlobal flag (any command, before or after its name):\n  "+backendUsage)
}

// backendUsage documents the global --backend flag (main's usage and every command's -h).
const backendUsage = "--backend CONFIG   the compute backend: go (the default, " + backend.DefaultConfig + "), xla:cuda or\n" +
	"                     xla:/absolute/path/to/plugin.so (a build with XLA: make build-xla; docs/GPU.md); the same as SINGLORA_BACKEND"

// takeBackendFlag removes the global flag --backend CONFIG (or --backend=CONFIG, -backend) from
// args, wherever it stands before a lone "--", checks CONFIG (backend.Validate: a backend this
// binary lacks or a missing plugin file is refused here, before any work) and sets
// SINGLORA_BACKEND to it, so that backend.Config and the processes a command starts (sweep's
// trainers, bench's workloads) use it. Given twice, the last one wins.
func takeBackendFlag(args []string) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "backend" {
			out = append(out, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("--backend needs a value: go, xla:cuda or xla:/absolute/path/to/plugin.so")
			}
			i++
			value = args[i]
		}
		if err := backend.Validate(value); err != nil {
			return nil, fmt.Errorf("--backend: %w", err)
		}
		if err := os.Setenv("SINGLORA_BACKEND", value); err != nil {
			return nil, fmt.Errorf("--backend: %w", err)
		}
	}
	return out, nil
}

func main() {
	args, err := takeBackendFlag(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "singlora: %v\n", err)
		os.Exit(2)
	}
	if len(args) < 1 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) >= 2 {
			if c, ok := commands[args[1]]; ok {
				_ = c.Run([]string{"-h"})
				return
			}
		}
		usage()
		if len(args) < 1 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "singlora: unknown command %q\n\n", args[0])
		usage()
		os.Exit(2)
	}
	if err := c.Run(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h: the flag package has printed the usage
			return
		}
		fmt.Fprintf(os.Stderr, "singlora %s: %v\n", c.Name, err)
		os.Exit(exitCode())
	}
}

// caught is the signal that stopped the command (nil: none).
var caught atomic.Pointer[syscall.Signal]

// exitCode is 128 + the signal's number when a signal stopped the command (130 for SIGINT, 143
// for SIGTERM, as shells report a process a signal ended), else 1.
func exitCode() int {
	if s := caught.Load(); s != nil {
		return 128 + int(*s)
	}
	return 1
}

// signalContext returns a context cancelled by SIGINT or SIGTERM, so that a command saves a
// checkpoint and stops; a second SIGINT/SIGTERM exits at once. SIGUSR1 — what a sweep's trainers
// get when the sweep dies (sweep.ParentDeathSignal) — also checkpoints and stops, but never
// aborts when repeated: the kernel may send it again as the orphaned trainer is handed from
// one parent to the next.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	go func() {
		stopping := false
		for sig := range ch {
			s, _ := sig.(syscall.Signal)
			switch {
			case s == syscall.SIGUSR1 && stopping:
				continue
			case stopping:
				fmt.Fprintf(os.Stderr, "\n%v again: stopping at once, without a checkpoint\n", sig)
				caught.Store(&s)
				os.Exit(exitCode())
			}
			stopping = true
			caught.Store(&s)
			what := sig.String()
			if s == syscall.SIGUSR1 {
				what = "the parent process (sweep) ended"
			}
			fmt.Fprintf(os.Stderr, "\n%s: saving a checkpoint and stopping (send SIGINT or SIGTERM again to abort)\n", what)
			cancel()
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
