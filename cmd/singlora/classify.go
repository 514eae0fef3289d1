package main

import (
	"bufio"
	"encoding/json"
	"errors"
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
		Details: textsUsage,
		Usage: `singlora classify --run runs/s1 "a lovely little film" "utterly boring"
singlora classify --run runs/s1 --data test.jsonl
singlora classify --run runs/s1 --checkpoint last < texts.txt
singlora classify --run runs/s1 -- "-1 stars, would not watch again"`,
		Run: func(args []string) error { return runClassify(args, os.Stdin, os.Stdout, os.Stderr) },
	})
	register(&command{
		Name:    "embed",
		Summary: "sentence embeddings from a trained run's adapted encoder, as JSON lines",
		Details: textsUsage,
		Usage: `singlora embed --run runs/s1 "some text" "more text"
singlora embed --run runs/s1 --checkpoint best < texts.txt`,
		Run: func(args []string) error { return runEmbed(args, os.Stdin, os.Stdout, os.Stderr) },
	})
}

// maxLineBytes is the longest line inputTexts reads from standard input.
const maxLineBytes = 16 << 20

// inputTexts returns the positional texts, or the non-blank lines of stdin when there are none.
// A read error, or a line longer than maxLineBytes, is reported before an empty input is.
func inputTexts(args []string, stdin io.Reader) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	var out []string
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("standard input: line %d is longer than %d MiB, the limit for one text", line+1, maxLineBytes>>20)
	} else if err != nil {
		return nil, fmt.Errorf("standard input: reading line %d: %w", line+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no texts: give them as arguments or one per line on standard input")
	}
	return out, nil
}

const checkpointUsage = "weights to use: best or last (RUN/checkpoints/…), or a checkpoint or adapter folder (default: RUN/adapter when the run finished, else best, else last)"

// loadRun loads the classifier of run with the weights checkpoint names, saying on stderr which
// weights it read.
func loadRun(cmd, run, checkpoint string, stderr io.Writer) (*classify.Task, error) {
	if run == "" {
		return nil, fmt.Errorf("--run is required")
	}
	task, w, err := finetune.LoadClassifierFrom(run, checkpoint)
	if err != nil {
		return nil, err
	}
	task.Warnings = stderr
	fmt.Fprintf(stderr, "%s: weights from %s\n", cmd, w)
	return task, nil
}

// textsUsage is classify's and embed's note on their arguments, shown by -h.
const textsUsage = `The texts are the arguments, or, when there are none, the non-blank lines of standard input; the
output is one JSON line per text. Flags may come before or after the texts; put "--" before texts
that begin with "-".`

// runFlags defines the flags classify and embed share: the run, its weights and the cache.
func runFlags(fs *flag.FlagSet) (run, checkpoint, cache *string) {
	run = fs.String("run", "", "the run folder to read (written by singlora train or demo; required)")
	checkpoint = fs.String("checkpoint", "", checkpointUsage)
	return run, checkpoint, cacheFlag(fs)
}

// parseRunArgs parses classify's or embed's command line (fs holds their flags) and returns the
// positional texts; --run must be given.
func parseRunArgs(fs *flag.FlagSet, args []string, run, cache *string) ([]string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if err := wantArgs(pos, 0, -1, "texts"); err != nil {
		return nil, err
	}
	if *run == "" {
		return nil, fmt.Errorf("--run is required: the run folder (from singlora train or demo) whose adapter and head to use")
	}
	return pos, useCache(fs, *cache)
}

func runClassify(args []string, stdin io.Reader, w, stderr io.Writer) error {
	fs := newFlags("classify")
	run, checkpoint, cache := runFlags(fs)
	dataPath := fs.String("data", "", "classify a data file instead (its label column, if any, gives the accuracy)")
	textCol := fs.String("text-column", "", "text column of --data (default text)")
	labelCol := fs.String("label-column", "", "label column of --data (default label)")
	pos, err := parseRunArgs(fs, args, run, cache)
	if err != nil {
		return err
	}
	var texts, gold []string
	if *dataPath != "" {
		if len(pos) > 0 {
			return fmt.Errorf("give texts as arguments or --data, not both")
		}
		ex, err := data.LoadClassification(*dataPath, data.Options{TextColumn: *textCol, LabelColumn: *labelCol, Warnings: stderr})
		if err != nil {
			return err
		}
		for _, e := range ex {
			texts, gold = append(texts, e.Text), append(gold, e.Label)
		}
	} else {
		if texts, err = inputTexts(pos, stdin); err != nil {
			return err
		}
	}
	task, err := loadRun("classify", *run, *checkpoint, stderr)
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
	lp, err := p.LogProbs(task.Tokenize(texts))
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
			if data.CanonicalLabel(gold[i]) == data.CanonicalLabel(task.Labels[k]) {
				correct++
			}
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if gold != nil {
		fmt.Fprintf(stderr, "accuracy %.4f on %d examples\n", float64(correct)/float64(len(gold)), len(gold))
	}
	return nil
}

func runEmbed(args []string, stdin io.Reader, w, stderr io.Writer) error {
	fs := newFlags("embed")
	run, checkpoint, cache := runFlags(fs)
	pos, err := parseRunArgs(fs, args, run, cache)
	if err != nil {
		return err
	}
	texts, err := inputTexts(pos, stdin)
	if err != nil {
		return err
	}
	task, err := loadRun("embed", *run, *checkpoint, stderr)
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
