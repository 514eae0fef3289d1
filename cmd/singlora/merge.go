package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/singlora/singlora/adapterio"
)

func init() {
	register(&command{
		Name:    "merge",
		Summary: "merge an adapter into (or --unmerge it from) a safetensors checkpoint",
		Usage:   "singlora merge --base model.safetensors --adapter ADAPTER_DIR --out merged.safetensors [--unmerge]",
		Run:     func(args []string) error { return runMerge(args, os.Stdout) },
	})
}

func runMerge(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	base := fs.String("base", "", "base checkpoint (.safetensors); adapted module <m> needs tensor <m>.weight")
	adapter := fs.String("adapter", "", "adapter folder (adapter_config.json + adapter_model.safetensors)")
	out := fs.String("out", "", "output .safetensors file (written atomically; may equal --base)")
	unmerge := fs.Bool("unmerge", false, "subtract the adapter's frozen ΔW instead of adding it (not possible for DoRA)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || *adapter == "" || *out == "" {
		fs.Usage()
		return errors.New("--base, --adapter and --out are required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	rep, err := adapterio.MergeFile(*base, *adapter, *out, *unmerge)
	if err != nil {
		return err
	}
	verb := "merged"
	if *unmerge {
		verb = "unmerged"
	}
	fmt.Fprintf(w, "%s %d weights, replaced %d and added %d modules_to_save tensors, copied %d tensors unchanged → %s\n",
		verb, len(rep.Merged), len(rep.Replaced), len(rep.Added), rep.Kept, *out)
	return nil
}
