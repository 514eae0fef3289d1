package main

import (
	"encoding/json"
	"flag"
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
		Usage:   "singlora toy --out runs/toy --seeds 1,2,3,4,5 --steps 3000 --lr 1e-4",
		Run:     runToy,
	})
}

func runToy(args []string) error {
	fs := flag.NewFlagSet("toy", flag.ContinueOnError)
	out := fs.String("out", filepath.Join("runs", "toy"), "output folder (per-run metrics.jsonl, toy.md, toy.json, loss plot)")
	seeds := fs.String("seeds", "1,2,3,4,5", "seeds")
	steps := fs.Int("steps", 3000, "AdamW steps")
	lr := fs.Float64("lr", 1e-4, "learning rate (the paper: 1e-4)")
	dim := fs.Int("dim", 128, "d of the d×d Wq, Wk")
	rank := fs.Int("rank", 4, "LoRA rank r; SingLoRA gets 2r (the same parameter count)")
	methods := fs.String("methods", "lora,singlora", "methods")
	if err := fs.Parse(args); err != nil {
		return err
	}
	seedList, err := parseSeeds(*seeds)
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
	for _, name := range strings.Split(*methods, ",") {
		m, err := peft.ParseMethod(name)
		if err != nil {
			return err
		}
		r := *rank
		if m == peft.SingLoRA {
			r = 2 * *rank
		}
		rw := row{Method: string(m), Rank: r, Params: 2 * peft.AdapterParams(m, peft.LinearSpec{In: *dim, Out: *dim}, r)}
		for _, s := range seedList {
			losses, err := toy.Run(be, toy.Config{Method: m, Dim: *dim, Rank: r, TargetRank: 2, Steps: *steps, LR: *lr, Batch: 8, Seq: 16, Seed: s})
			if err != nil {
				return err
			}
			dir := filepath.Join(*out, fmt.Sprintf("%s-s%d", m, s))
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
	fmt.Fprintf(&md, "Attention toy: d=%d, %d AdamW steps at lr %g, %d seeds, batch 8×16 tokens, targets of rank 2 per matrix.\n\n", *dim, *steps, *lr, len(seedList))
	md.WriteString("| method | rank | adapter params | final loss (mean ± std) | per seed |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		var per []string
		for _, f := range r.Final {
			per = append(per, fmt.Sprintf("%.3g", f))
		}
		fmt.Fprintf(&md, "| %s | %d | %d | %.4g ± %.2g | %s |\n", r.Method, r.Rank, r.Params, r.Mean, r.Std, strings.Join(per, ", "))
	}
	js, _ := json.MarshalIndent(rows, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "toy.json"), js, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "toy.md"), []byte(md.String()), 0o644); err != nil {
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
	if err := ch.WriteSVG(filepath.Join(*out, "loss.svg")); err != nil {
		return err
	}
	if err := ch.WritePNG(filepath.Join(*out, "loss.png")); err != nil {
		return err
	}
	fmt.Print(md.String())
	return nil
}
