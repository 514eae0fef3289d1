package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/safetensors"
)

func init() {
	register(&command{
		Name:    "merge",
		Summary: "merge an adapter into (or --unmerge it from) a safetensors checkpoint",
		Details: `Merge writes W0 + ΔW for every adapted module (<m>.weight of --base) and the adapter's modules_to_save
tensors; --unmerge subtracts ΔW again. A SingLoRA module missing from module_shapes takes its
[out, in] from --base. Nothing is written unless every output tensor is finite in its dtype.
Here --out is a file (every other command's --out is a folder).`,
		Usage: `singlora merge --base model.safetensors --adapter ADAPTER_DIR --out merged.safetensors
singlora merge --unmerge --base merged.safetensors --adapter ADAPTER_DIR --out base.safetensors`,
		Run: func(args []string) error { return runMerge(args, os.Stdout) },
	})
}

func runMerge(args []string, w io.Writer) error {
	fs := newFlags("merge")
	base := fs.String("base", "", "base checkpoint (.safetensors); adapted module <m> needs tensor <m>.weight")
	adapter := fs.String("adapter", "", "adapter folder (adapter_config.json + adapter_model.safetensors)")
	out := fs.String("out", "", "the output .safetensors file (a file, not a folder; written atomically; may equal --base)")
	unmerge := fs.Bool("unmerge", false, "subtract the adapter's frozen ΔW instead of adding it (not possible for DoRA), and remove the\n"+
		"modules_to_save tensors (e.g. a head) that merge added to a base without them (merge records them\n"+
		"in the file's metadata); those that merge wrote over the base's own are kept, as the originals are\n"+
		"not in the adapter")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	if err := required(map[string]string{"base": *base, "adapter": *adapter, "out": *out}, "base", "adapter", "out"); err != nil {
		return err
	}
	if err := safetensors.CheckOutputPath(*out); err != nil {
		return fmt.Errorf("--out %w", err)
	}
	rep, err := adapterio.MergeFile(*base, *adapter, *out, *unmerge)
	if err != nil {
		return err
	}
	if !*unmerge {
		fmt.Fprintf(w, "merged %d weights, replaced %d and added %d modules_to_save tensors, copied %d tensors unchanged → %s\n",
			len(rep.Merged), len(rep.Replaced), len(rep.Added), rep.Kept, *out)
		if r := rep.Rounding; r.Tensors > 0 {
			fmt.Fprintf(w, "rounding to the base's 16-bit dtype (%d tensors): max |error| %.3g; it took away up to %.1f%% of a tensor's update (%s)\n",
				r.Tensors, r.MaxAbs, 100*r.Lost, r.LostIn)
			if r.Lost > 0.5 {
				fmt.Fprintf(w, "warning: in %s most of the update is below the 16-bit spacing of the base's values; keep the adapter separate or merge into a float32 copy of the base\n", r.LostIn)
			}
		}
		return nil
	}
	fmt.Fprintf(w, "unmerged %d weights, removed %d modules_to_save tensors merge had added%s, copied %d tensors unchanged → %s\n",
		len(rep.Merged), len(rep.Removed), nameList(rep.Removed), rep.Kept, *out)
	if len(rep.NotRestored) > 0 {
		fmt.Fprintf(w, "kept %d modules_to_save tensors with the adapter's values%s: merge did not record adding them, so they replaced the base's own, whose values the adapter does not hold\n",
			len(rep.NotRestored), nameList(rep.NotRestored))
	}
	return nil
}

// nameList formats names as " (a, b)", or "" when there are none.
func nameList(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// required checks that the flags names (in this order) have values in given, and names the
// missing ones.
func required(given map[string]string, names ...string) error {
	var missing []string
	for _, n := range names {
		if given[n] == "" {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	all := make([]string, len(names))
	for i, n := range names {
		all[i] = "--" + n
	}
	verb := "is"
	if len(missing) > 1 {
		verb = "are"
	}
	return fmt.Errorf("%s %s missing: this command needs %s (see -h)", strings.Join(missing, " and "), verb, strings.Join(all, ", "))
}
