package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/singlora/singlora/adapterio"
)

func init() {
	register(&command{
		Name:    "combine",
		Summary: "combine adapters into a new one whose ΔW is (or approximates) the weighted sum Σ wᵢΔWᵢ (PEFT's add_weighted_adapter)",
		Details: `Each --adapter is NAME=DIR:WEIGHT; NAME= and :WEIGHT may be left out (the name is then the folder's
base name, the weight 1). NAME is a plain word (no '/', ':' or '='): a folder whose own name holds
'=' needs a NAME= in front, one whose name holds ':' an explicit :WEIGHT. Weights may be negative.

--how cat (the default) is exact, at rank Σ rᵢ: SingLoRA inputs whose w·s·u are all ≥ 0 give a
SingLoRA adapter with A = [√(w₁s₁u₁)·A₁ | √(w₂s₂u₂)·A₂ | …]; a LoRA or LoRA+ input, or a negative
weight (a negative multiple of A·Aᵀ has no SingLoRA form), makes every input go through its LoRA
form (as singlora export writes it) and gives a PEFT LoRA adapter with lora_A = [A₁; A₂; …] and
lora_B = [w₁s₁B₁ | w₂s₂B₂ | …]. A module in only some inputs sums those.
--how linear adds the factors (approximate: the cross terms remain); the inputs must share the method
(SingLoRA, or LoRA/LoRA+), the modules and each module's rank: SingLoRA A = Σ √(wᵢsᵢuᵢ)·Aᵢ, LoRA
A = Σ √|wᵢ|·Aᵢ, B = Σ sign(wᵢ)·√|wᵢ|·sᵢ·Bᵢ.
--how svd builds Σ wᵢΔWᵢ per module in float64 and keeps its best rank-K part (--rank K, by default
the largest input rank; K ≤ min(in, out) of every module): a PEFT LoRA adapter with lora_B = U·Σ,
lora_A = Vᵀ.

The output has scale 1 on every module (lora_alpha = r, no rsLoRA, no ramp); modules whose rank is
not the most common are listed in rank_pattern, with alpha_pattern α = that rank. combine prints
which form it wrote and why, and the measured relative error ‖ΔW_out − Σ wᵢΔWᵢ‖_F / ‖Σ wᵢΔWᵢ‖_F
(float32 rounding for cat; per module for linear and svd, with svd's dropped energy
Σ_{j>K} σⱼ² / Σ σⱼ²). DoRA inputs are refused (DoRA's update depends on the base weight: there is no
ΔW to add), as are inputs with modules_to_save or trained biases (replacements, not updates).
Every input is loaded and checked before anything is written; --out (not one of the inputs) is
written atomically.`,
		Usage: `singlora combine --adapter math=runs/math/adapter:0.7 --adapter code=runs/code/adapter:0.3 --out MIXED_DIR
singlora combine --adapter A_DIR --adapter B_DIR:-1 --out DIFF_DIR
singlora combine --how svd --rank 8 --adapter A_DIR:0.5 --adapter B_DIR:0.5 --out SVD_DIR --json`,
		Run: func(args []string) error { return runCombine(args, os.Stdout) },
	})
}

func runCombine(args []string, w io.Writer) error {
	fs := newFlags("combine")
	adapters := newListFlag()
	fs.Var(adapters, "adapter", "an input: `NAME=DIR:WEIGHT` (NAME= and :WEIGHT optional; weight 1); repeat it or separate inputs with commas")
	out := fs.String("out", "", "the output adapter `folder` (not one of the inputs; its parent folder must exist)")
	how := fs.String("how", adapterio.CombineCat, "cat (exact, rank Σ rᵢ), linear (sum of factors, approximate) or svd (best rank-K part of Σ wᵢΔWᵢ)")
	rank := fs.Int("rank", 0, "svd only: the output rank K (default: the largest input rank; at most min(in, out) of every module)")
	jsonOut := fs.Bool("json", false, "print the report as one JSON object (out, inputs, how, peft_type, why, r, params, rel_error, modules, …)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	if err := required(map[string]string{"adapter": adapters.String(), "out": *out}, "adapter", "out"); err != nil {
		return err
	}
	if !slices.Contains(adapterio.CombineModes, *how) {
		return fmt.Errorf("unknown --how %q (want %s)", *how, strings.Join(adapterio.CombineModes, ", "))
	}
	if isSet(fs, "rank") {
		if *how != adapterio.CombineSVD {
			return fmt.Errorf("--rank is for --how svd (the output rank K); %s's rank follows from the inputs", *how)
		}
		if *rank < 1 {
			return fmt.Errorf("--rank %d: want K ≥ 1 (or leave --rank out for the largest input rank)", *rank)
		}
	}
	var inputs []adapterio.CombineInput
	for _, s := range adapters.values {
		in, err := parseCombineInput(s)
		if err != nil {
			return err
		}
		inputs = append(inputs, in)
	}
	a, rep, err := adapterio.CombineFolders(inputs, *out, *how, *rank)
	if errors.Is(err, adapterio.ErrNoModuleShape) {
		return fmt.Errorf("%w\ncombine has no base checkpoint to read each module's [out, in] from: add \"module_shapes\": {\"<module>\": [out, in], ...} to that adapter's %s", err, adapterio.ConfigFile)
	}
	if err != nil {
		return err
	}
	if *jsonOut {
		type input struct {
			Name   string  `json:"name"`
			Dir    string  `json:"dir"`
			Weight float64 `json:"weight"`
		}
		doc := struct {
			Out    string  `json:"out"`
			Inputs []input `json:"inputs"`
			adapterio.CombineReport
		}{Out: *out, CombineReport: rep}
		for i, in := range inputs {
			doc.Inputs = append(doc.Inputs, input{Name: rep.Names[i], Dir: in.Dir, Weight: in.Weight})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(doc)
	}
	var parts []string
	for i, in := range inputs {
		parts = append(parts, fmt.Sprintf("%s×%g", rep.Names[i], in.Weight))
	}
	lo, hi := rep.R, rep.R
	for _, m := range rep.Modules {
		lo, hi = min(lo, m.Rank), max(hi, m.Rank)
	}
	ranks := fmt.Sprintf("r=%d", rep.R)
	if lo != hi {
		ranks += fmt.Sprintf(" (module ranks %d–%d in rank_pattern)", lo, hi)
	}
	fmt.Fprintf(w, "combined %d adapters (%s) by %s → %s adapter, %d modules, %s, %d params → %s\n",
		len(inputs), strings.Join(parts, ", "), rep.How, a.Config.PeftType, len(rep.Modules), ranks, rep.Params, *out)
	fmt.Fprintf(w, "form: %s\n", rep.Why)
	fmt.Fprintf(w, "relative error ‖ΔW_out − Σ wᵢΔWᵢ‖/‖Σ wᵢΔWᵢ‖: overall %.3g, largest %.3g (%s)\n", rep.RelError, rep.MaxRelError, rep.MaxRelErrorIn)
	if rep.How == adapterio.CombineSVD {
		fmt.Fprintf(w, "dropped energy Σ_{j>K} σⱼ²/Σ σⱼ²: largest %.3g (%s)\n", rep.MaxDropped, rep.MaxDroppedIn)
	}
	if rep.How != adapterio.CombineCat {
		for _, m := range rep.Modules {
			line := fmt.Sprintf("  %s [%d,%d] r=%d: error %.3g", m.Path, m.Out, m.In, m.Rank, m.RelError)
			if rep.How == adapterio.CombineSVD {
				line += fmt.Sprintf(", dropped energy %.3g", m.Dropped)
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

// parseCombineInput parses an --adapter value NAME=DIR:WEIGHT (see the command's details).
func parseCombineInput(s string) (adapterio.CombineInput, error) {
	in := adapterio.CombineInput{Weight: 1}
	rest := s
	if name, dir, ok := strings.Cut(s, "="); ok && !strings.ContainsAny(name, `/\:`) {
		if name == "" {
			return in, fmt.Errorf("--adapter %q: empty name before '=' (give NAME=DIR:WEIGHT, or DIR:WEIGHT)", s)
		}
		in.Name, rest = name, dir
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		w, err := strconv.ParseFloat(rest[i+1:], 64)
		if err != nil {
			return in, fmt.Errorf("--adapter %q: weight %q is not a number (give NAME=DIR:WEIGHT; a folder whose name holds ':' needs an explicit :WEIGHT)", s, rest[i+1:])
		}
		in.Weight, rest = w, rest[:i]
	}
	if rest == "" {
		return in, fmt.Errorf("--adapter %q: no folder (give NAME=DIR:WEIGHT)", s)
	}
	in.Dir = rest
	return in, nil
}
