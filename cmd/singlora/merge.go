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
		Summary: "merge an adapter into (or --unmerge it from) a safetensors checkpoint: a file, or a folder, sharded or not",
		Details: `Merge writes W0 + ΔW for every adapted module (<m>.weight of --base) and the adapter's modules_to_save
tensors; --unmerge subtracts ΔW again. A SingLoRA module missing from module_shapes takes its
[out, in] from --base.

--base is a .safetensors file (then --out is a file, and may equal --base), or a Hugging Face
checkpoint folder (model.safetensors, or shards listed by model.safetensors.index.json), or that
index file (then --out is a folder). A folder is merged shard by shard, tensor by tensor, so memory
stays near the largest merged tensor: --out receives the merged shards under the same names, the
index with weight_map and metadata.total_size recomputed, and the base folder's other files
(config.json, tokenizer files, …; not subfolders or weights in other formats). modules_to_save
tensors the base lacks (e.g. a classifier head) go into the last shard. The index is checked
against the shards' headers, and the adapter against the weights, before anything is written; the
folder is built beside --out and moved into place when complete, so an error or a kill leaves no
--out or the previous one whole. --out may not be the --base folder; an existing --out must be
empty or a checkpoint folder (it is replaced).

Nothing is written unless every output tensor is finite in its dtype: that check is always on,
with or without --safe. --safe (PEFT's safe_merge) also checks each adapted base weight for
NaN/Inf before merging, so a checkpoint that is already broken is named as such rather than the
adapter blamed.`,
		Usage: `singlora merge --base model.safetensors --adapter ADAPTER_DIR --out merged.safetensors
singlora merge --base MODEL_DIR --adapter ADAPTER_DIR --out MERGED_DIR --safe
singlora merge --unmerge --base MERGED_DIR --adapter ADAPTER_DIR --out BASE_DIR`,
		Run: func(args []string) error { return runMerge(args, os.Stdout) },
	})
}

func runMerge(args []string, w io.Writer) error {
	fs := newFlags("merge")
	base := fs.String("base", "", "base checkpoint: a .safetensors file, a Hugging Face checkpoint folder (model.safetensors or sharded\n"+
		"with model.safetensors.index.json), or a sharded checkpoint's index file; adapted module <m> needs\n"+
		"tensor <m>.weight")
	adapter := fs.String("adapter", "", "adapter folder (adapter_config.json + adapter_model.safetensors)")
	out := fs.String("out", "", "the output: a .safetensors file when --base is a file (written atomically; may equal --base),\n"+
		"a folder when --base is a folder or an index (built beside it and moved into place; not the --base\n"+
		"folder)")
	unmerge := fs.Bool("unmerge", false, "subtract the adapter's frozen ΔW instead of adding it (not possible for DoRA), and remove the\n"+
		"modules_to_save tensors (e.g. a head) that merge added to a base without them (merge records them\n"+
		"in the file's or shard's metadata); those that merge wrote over the base's own are kept, as the\n"+
		"originals are not in the adapter")
	safe := fs.Bool("safe", false, "PEFT's safe_merge: also check each adapted base weight for NaN/Inf before merging and name it\n"+
		"(the merged tensors are checked for NaN/Inf with or without --safe)")
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
	folder := strings.HasSuffix(*base, ".index.json")
	if st, err := os.Stat(*base); err == nil && st.IsDir() {
		folder = true
	}
	if !folder {
		if err := safetensors.CheckOutputPath(*out); err != nil {
			return fmt.Errorf("--out %w", err)
		}
	}
	rep, err := adapterio.MergeCheckpoint(*base, *adapter, *out, adapterio.MergeOptions{Unmerge: *unmerge, Safe: *safe})
	if err != nil {
		return err
	}
	where := *out
	if rep.Shards > 1 {
		where = fmt.Sprintf("%s (%d shards)", *out, rep.Shards)
	}
	if !*unmerge {
		fmt.Fprintf(w, "merged %d weights, replaced %d and added %d modules_to_save tensors, copied %d tensors unchanged → %s\n",
			len(rep.Merged), len(rep.Replaced), len(rep.Added), rep.Kept, where)
		if rep.AddedTo != "" && rep.Shards > 1 {
			fmt.Fprintf(w, "added%s to shard %s\n", nameList(rep.Added), rep.AddedTo)
		}
		if r := rep.Rounding; r.Tensors > 0 {
			fmt.Fprintf(w, "rounding to the base's 16-bit dtype (%d tensors): max |error| %.3g; it took away up to %.1f%% of a tensor's update (%s)\n",
				r.Tensors, r.MaxAbs, 100*r.Lost, r.LostIn)
			if r.Lost > 0.5 {
				fmt.Fprintf(w, "warning: in %s most of the update is below the 16-bit spacing of the base's values; keep the adapter separate or merge into a float32 copy of the base\n", r.LostIn)
			}
		}
	} else {
		fmt.Fprintf(w, "unmerged %d weights, removed %d modules_to_save tensors merge had added%s, copied %d tensors unchanged → %s\n",
			len(rep.Merged), len(rep.Removed), nameList(rep.Removed), rep.Kept, where)
		if len(rep.NotRestored) > 0 {
			fmt.Fprintf(w, "kept %d modules_to_save tensors with the adapter's values%s: merge did not record adding them, so they replaced the base's own, whose values the adapter does not hold\n",
				len(rep.NotRestored), nameList(rep.NotRestored))
		}
	}
	if len(rep.Copied) > 0 {
		fmt.Fprintf(w, "copied %d other files of the base folder%s\n", len(rep.Copied), nameList(rep.Copied))
	}
	if len(rep.NotCopied) > 0 {
		fmt.Fprintf(w, "not copied (subfolders, weights in other formats or outside the index)%s\n", nameList(rep.NotCopied))
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
