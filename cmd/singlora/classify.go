package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/data"
	"github.com/singlora/singlora/finetune"
)

func init() {
	register(&command{
		Name:    "classify",
		Summary: "classify texts with a trained run (its adapter and head)",
		Usage: `singlora classify --run runs/s1 "a lovely little film" "utterly boring"
singlora classify --run runs/s1 --data test.jsonl`,
		Run: func(args []string) error { return runClassify(args, os.Stdout) },
	})
	register(&command{
		Name:    "embed",
		Summary: "sentence embeddings from a trained run's adapted encoder, as JSON lines",
		Usage:   `singlora embed --run runs/s1 "some text" < more.txt`,
		Run:     func(args []string) error { return runEmbed(args, os.Stdout) },
	})
}

// inputTexts returns the positional texts, or the lines of stdin when there are none.
func inputTexts(args []string, stdin io.Reader) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	var out []string
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no texts: give them as arguments or one per line on standard input")
	}
	return out, sc.Err()
}

func runClassify(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("classify", flag.ContinueOnError)
	run := fs.String("run", "", "trained run folder (from singlora train)")
	dataPath := fs.String("data", "", "classify a data file instead (its label column, if any, gives the accuracy)")
	textCol := fs.String("text-column", "", "text column of --data (default text)")
	labelCol := fs.String("label-column", "", "label column of --data (default label)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *run == "" {
		return fmt.Errorf("--run is required")
	}
	var texts, gold []string
	if *dataPath != "" {
		ex, err := data.LoadClassification(*dataPath, data.Options{TextColumn: *textCol, LabelColumn: *labelCol})
		if err != nil {
			return err
		}
		for _, e := range ex {
			texts, gold = append(texts, e.Text), append(gold, e.Label)
		}
	} else {
		var err error
		if texts, err = inputTexts(fs.Args(), os.Stdin); err != nil {
			return err
		}
	}
	task, err := finetune.LoadClassifier(*run)
	if err != nil {
		return err
	}
	be, err := backend.Get()
	if err != nil {
		return err
	}
	p, err := task.NewPredictor(be)
	if err != nil {
		return err
	}
	rows := task.Enc.Tokenize(texts)
	lp, err := p.LogProbs(rows)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	correct := 0
	for i, row := range lp {
		k := classify.Best(row)
		out := map[string]any{"text": texts[i], "prediction": task.Labels[k], "log_probs": row}
		if gold != nil {
			out["label"] = gold[i]
			if gold[i] == task.Labels[k] {
				correct++
			}
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if gold != nil {
		fmt.Fprintf(os.Stderr, "accuracy %.4f on %d examples\n", float64(correct)/float64(len(gold)), len(gold))
	}
	return nil
}

func runEmbed(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	run := fs.String("run", "", "trained run folder (from singlora train)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *run == "" {
		return fmt.Errorf("--run is required")
	}
	texts, err := inputTexts(fs.Args(), os.Stdin)
	if err != nil {
		return err
	}
	task, err := finetune.LoadClassifier(*run)
	if err != nil {
		return err
	}
	be, err := backend.Get()
	if err != nil {
		return err
	}
	embs, err := finetune.Embeddings(task, be, texts)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	for i, e := range embs {
		if err := enc.Encode(map[string]any{"text": texts[i], "embedding": e}); err != nil {
			return err
		}
	}
	return nil
}
