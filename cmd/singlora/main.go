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
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		if len(os.Args) >= 3 {
			if c, ok := commands[os.Args[2]]; ok {
				_ = c.Run([]string{"-h"})
				return
			}
		}
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "singlora: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := c.Run(os.Args[2:]); err != nil {
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
