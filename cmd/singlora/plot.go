package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/plot"
)

func init() {
	register(&command{
		Name:    "plot",
		Summary: "chart training curves of run folders as SVG and PNG",
		Usage: `singlora plot runs/a runs/b
singlora plot --metric eval.accuracy --sweep --out plots runs/*
singlora plot runs/s1 --metric loss,lr --smooth 0.9 --out plots`,
		Run: func(args []string) error { return runPlot(args, os.Stdout) },
	})
}

// smoothed are the metrics --smooth applies to: the noisy per-step ones.
var smoothed = map[string]bool{"loss": true, "grad_norm": true}

func runPlot(args []string, w io.Writer) error {
	fs := newFlags("plot")
	ml := newListFlag()
	fs.Var(ml, "metric", "the `metrics` to chart, comma-separated or repeated: loss, lr, u, grad_norm, wall_seconds, eval.NAME\n(default: loss and every eval metric the runs log)")
	out := fs.String("out", ".", "folder for METRIC.svg and METRIC.png (created if missing)")
	smooth := fs.Float64("smooth", 0, "EMA weight in [0, 1) for the loss and grad_norm curves (0: raw; 0.9 is smooth)")
	sweep := fs.Bool("sweep", false, "also chart each metric's final value against config.json's lr, one line per method\n(sweep-METRIC.svg/png; runs sharing method and lr are averaged with ± std bars)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 1, -1, "one or more run folders (each with metrics.jsonl)"); err != nil {
		return err
	}
	runs, err := plot.LoadRuns(pos...)
	if err != nil {
		return err
	}
	metrics := ml.values
	if len(metrics) == 0 {
		avail := plot.Available(runs)
		for _, m := range avail {
			if m == "loss" || strings.HasPrefix(m, "eval.") {
				metrics = append(metrics, m)
			}
		}
		if len(metrics) == 0 {
			return fmt.Errorf("the runs log no loss or eval metrics; available: %s (pick with --metric)", orNone(avail))
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, m := range metrics {
		opts := plot.CurveOptions{}
		if smoothed[m] {
			opts.Smooth = *smooth
		}
		c, err := plot.Curves(runs, m, opts)
		if err != nil {
			return err
		}
		if err := writeChart(w, c, filepath.Join(*out, fileName(m))); err != nil {
			return err
		}
		if !*sweep {
			continue
		}
		pts, err := plot.SweepPoints(runs, m)
		if err != nil {
			return err
		}
		sc, err := plot.Sweep(pts, m)
		if err != nil {
			return err
		}
		if err := writeChart(w, sc, filepath.Join(*out, "sweep-"+fileName(m))); err != nil {
			return err
		}
	}
	return nil
}

func writeChart(w io.Writer, c *plot.Chart, base string) error {
	if err := c.WriteSVG(base + ".svg"); err != nil {
		return err
	}
	if err := c.WritePNG(base + ".png"); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s.svg and %s.png\n", base, base)
	return nil
}

// fileName turns a metric name into a file name: letters, digits, '.', '-' and '_' are kept.
func fileName(metric string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, strings.Trim(metric, "."))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
