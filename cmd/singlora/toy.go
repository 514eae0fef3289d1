package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/plot"
	"github.com/singlora/singlora/toy"
)

func init() {
	register(&command{
		Name:    "toy",
		Summary: "the paper's §5 attention toy: SingLoRA vs LoRA at equal parameters on 128×128 Wq/Wk targets",
		Usage: `singlora toy --out runs/toy --seed 1,2,3,4,5 --steps 3000 --lr 1e-4
singlora toy --out runs/toy-r8 --rank 8 --singlora-rank 8 --method lora,singlora,dora`,
		Run: runToy,
	})
}

// toyArgs are toy's settings from the command line.
type toyArgs struct {
	out                     string
	seeds                   []uint64
	steps, dim, rank, sRank int // sRank: --singlora-rank (0: equalRank)
	lr                      float64
	methods                 []peft.Method
	jsonOut                 bool
}

func parseToy(args []string) (*toyArgs, error) {
	fs := newFlags("toy")
	out := fs.String("out", filepath.Join("runs", "toy"), "output folder (per-run metrics.jsonl, toy.md, toy.json, loss plot)")
	seeds := newListFlag("1", "2", "3", "4", "5")
	fs.Var(seeds, "seed", "the `seeds`, comma-separated or repeated")
	alias(fs, "seeds", "seed")
	steps := fs.Int("steps", 3000, "AdamW steps")
	lr := fs.Float64("lr", 1e-4, "learning rate (the paper: 1e-4)")
	dim := fs.Int("dim", 128, "d of the d×d Wq, Wk")
	rank := fs.Int("rank", 4, "LoRA's rank r, the reference: every method trains at the rank with LoRA r's adapter parameter count\n"+
		"(LoRA+ and DoRA r, SingLoRA 2r: its one d×2r matrix has LoRA's 2·d·r parameters)")
	sRank := fs.Int("singlora-rank", 0, "SingLoRA's rank instead (default 2·--rank, the equal-parameter rank)")
	methods := newListFlag("lora", "singlora")
	fs.Var(methods, "method", "the `methods`, comma-separated or repeated, of "+peft.MethodList())
	alias(fs, "methods", "method")
	jsonOut := fs.Bool("json", false, "print the rows of toy.json on stdout instead of the table")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return nil, err
	}
	a := &toyArgs{out: *out, steps: *steps, dim: *dim, rank: *rank, sRank: *sRank, lr: *lr, jsonOut: *jsonOut}
	if a.rank < 1 || a.sRank < 0 {
		return nil, fmt.Errorf("--rank %d must be ≥ 1 and --singlora-rank %d ≥ 1 (or 0: 2·--rank)", a.rank, a.sRank)
	}
	if a.seeds, err = parseSeeds(seeds.values); err != nil {
		return nil, err
	}
	for _, name := range methods.values {
		m, err := peft.ParseMethod(name)
		if err != nil {
			return nil, fmt.Errorf("--method: %w", err)
		}
		a.methods = append(a.methods, m)
	}
	if len(a.methods) == 0 {
		return nil, fmt.Errorf("--method: no methods given (want one or more of %s)", peft.MethodList())
	}
	return a, nil
}

// rankOf is the rank method m trains at: --singlora-rank for SingLoRA when given, else
// equalRank's.
func (a *toyArgs) rankOf(m peft.Method) int {
	if m == peft.SingLoRA && a.sRank > 0 {
		return a.sRank
	}
	return equalRank(m, a.dim, a.rank)
}

// equalRank is the rank at which method m's adapter on a d×d layer has as many rank-dependent
// parameters as LoRA's at rank r: r·(LoRA's parameters per unit of rank)/(m's), rounded down —
// 2r for SingLoRA (one d×r matrix against LoRA's two), r for LoRA, LoRA+ and DoRA (whose
// magnitude vector does not grow with r), and r for methods without rank-dependent parameters.
func equalRank(m peft.Method, d, r int) int {
	spec := peft.LinearSpec{In: d, Out: d}
	perRank := func(m peft.Method) int { return peft.AdapterParams(m, spec, 2) - peft.AdapterParams(m, spec, 1) }
	pm := perRank(m)
	if pm <= 0 {
		return r
	}
	return max(1, r*perRank(peft.LoRA)/pm)
}

func runToy(args []string) error {
	a, err := parseToy(args)
	if err != nil {
		return err
	}
	be, err := backend.Get()
	if err != nil {
		return err
	}
	type row struct {
		Method string    `json:"method"`
		Rank   int       `json:"rank"`
		Params int       `json:"adapter_params"`
		Final  []float64 `json:"final_loss_per_seed"`
		Mean   float64   `json:"final_loss_mean"`
		Std    float64   `json:"final_loss_std"`
	}
	var rows []row
	var dirs []string
	for _, m := range a.methods {
		r := a.rankOf(m)
		rw := row{Method: string(m), Rank: r, Params: 2 * peft.AdapterParams(m, peft.LinearSpec{In: a.dim, Out: a.dim}, r)}
		for _, s := range a.seeds {
			losses, err := toy.Run(be, toy.Config{Method: m, Dim: a.dim, Rank: r, TargetRank: 2, Steps: a.steps, LR: a.lr, Batch: 8, Seq: 16, Seed: s})
			if err != nil {
				return err
			}
			dir := filepath.Join(a.out, fmt.Sprintf("%s-s%d", m, s))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			var sb strings.Builder
			for i, l := range losses {
				js, _ := json.Marshal(map[string]any{"step": i + 1, "loss": l})
				sb.Write(js)
				sb.WriteByte('\n')
			}
			if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(sb.String()), 0o644); err != nil {
				return err
			}
			cfg, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("%s r=%d seed %d", m, r, s), "method": m})
			if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
				return err
			}
			dirs = append(dirs, dir)
			// Final loss: mean of the last 1% of steps (the batches are random).
			k := max(1, len(losses)/100)
			var f float64
			for _, l := range losses[len(losses)-k:] {
				f += l
			}
			rw.Final = append(rw.Final, f/float64(k))
			fmt.Fprintf(os.Stderr, "%s r=%d seed %d: loss %.4g → %.4g\n", m, r, s, losses[0], f/float64(k))
		}
		var mean, v float64
		for _, f := range rw.Final {
			mean += f
		}
		mean /= float64(len(rw.Final))
		for _, f := range rw.Final {
			v += (f - mean) * (f - mean)
		}
		rw.Mean = mean
		if len(rw.Final) > 1 {
			rw.Std = math.Sqrt(v / float64(len(rw.Final)-1))
		}
		rows = append(rows, rw)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Attention toy: d=%d, %d AdamW steps at lr %g, %d seeds, batch 8×16 tokens, targets of rank 2 per matrix.\n", a.dim, a.steps, a.lr, len(a.seeds))
	fmt.Fprintf(&md, "Ranks: LoRA r=%d (--rank); each method at the rank with LoRA r=%d's adapter parameter count", a.rank, a.rank)
	if a.sRank > 0 {
		fmt.Fprintf(&md, ", except SingLoRA at r=%d (--singlora-rank)", a.sRank)
	}
	md.WriteString(".\n\n")
	md.WriteString("| method | rank | adapter params | final loss (mean ± std) | per seed |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		var per []string
		for _, f := range r.Final {
			per = append(per, fmt.Sprintf("%.3g", f))
		}
		fmt.Fprintf(&md, "| %s | %d | %d | %.4g ± %.2g | %s |\n", r.Method, r.Rank, r.Params, r.Mean, r.Std, strings.Join(per, ", "))
	}
	js, _ := json.MarshalIndent(rows, "", "  ")
	if err := os.WriteFile(filepath.Join(a.out, "toy.json"), js, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(a.out, "toy.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	runs, err := plot.LoadRuns(dirs...)
	if err != nil {
		return err
	}
	ch, err := plot.Curves(runs, "loss", plot.CurveOptions{Smooth: 0.98})
	if err != nil {
		return err
	}
	if err := ch.WriteSVG(filepath.Join(a.out, "loss.svg")); err != nil {
		return err
	}
	if err := ch.WritePNG(filepath.Join(a.out, "loss.png")); err != nil {
		return err
	}
	if a.jsonOut {
		return printJSON(os.Stdout, rows)
	}
	fmt.Print(md.String())
	return nil
}
