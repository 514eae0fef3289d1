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

	"github.com/gomlx/compute"

	"github.com/singlora/singlora/adapterio"
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
	runs := newListFlag()
	fs.Var(runs, "run", "the run folder to read (written by singlora train or demo; required), `[NAME=]RUN`; repeat it to load several\n"+
		"adapter runs of one model onto one base and choose with --active")
	checkpoint := fs.String("checkpoint", "", checkpointUsage)
	cache := cacheFlag(fs)
	active := newListFlag()
	fs.Var(active, "active", "with several --run: the `NAME`s to classify with, in turn (\"all\": every run); each JSON line gets \"run\": NAME")
	dataPath := fs.String("data", "", "classify a data file instead (its label column, if any, gives the accuracy)")
	textCol := fs.String("text-column", "", "text column of --data (default text)")
	labelCol := fs.String("label-column", "", "label column of --data (default label)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, -1, "texts"); err != nil {
		return err
	}
	if len(runs.values) == 0 {
		return fmt.Errorf("--run is required: the run folder (from singlora train or demo) whose adapter and head to use")
	}
	if err := useCache(fs, *cache); err != nil {
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
	be, err := backend.Get()
	if err != nil {
		return err
	}
	if len(runs.values) == 1 && len(active.values) == 0 {
		task, err := loadRun("classify", runs.values[0], *checkpoint, stderr)
		if err != nil {
			return err
		}
		return classifyWith(task, be, "", texts, gold, w, stderr)
	}
	named, actives, err := planRuns(runs.values, active.values)
	if err != nil {
		return err
	}
	cs, err := finetune.LoadClassifiers(named, *checkpoint)
	if err != nil {
		return err
	}
	for _, r := range named {
		fmt.Fprintf(stderr, "classify: %s: weights from %s\n", r.Name, cs.Weights(r.Name))
	}
	for _, name := range actives {
		task, err := cs.Activate(name)
		if err != nil {
			return err
		}
		task.Warnings = stderr
		label := name
		if len(actives) == 1 {
			label = ""
		}
		if err := classifyWith(task, be, label, texts, gold, w, stderr); err != nil {
			return err
		}
	}
	return nil
}

// classifyWith writes task's prediction for each text as a JSON line (with "run": name when name
// is set) and, with gold labels, the accuracy on stderr.
func classifyWith(task *classify.Task, be compute.Backend, name string, texts, gold []string, w, stderr io.Writer) error {
	p, err := task.NewPredictor(be)
	if err != nil {
		return err
	}
	defer p.Close()
	lp, err := p.LogProbs(task.Tokenize(texts))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	correct := 0
	for i, row := range lp {
		k := classify.Best(row)
		out := map[string]any{"text": texts[i], "prediction": task.Labels[k], "log_probs": row}
		if name != "" {
			out["run"] = name
		}
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
		who := ""
		if name != "" {
			who = name + ": "
		}
		fmt.Fprintf(stderr, "%saccuracy %.4f on %d examples\n", who, float64(correct)/float64(len(gold)), len(gold))
	}
	return nil
}

// planRuns resolves classify's --run values ([NAME=]RUN; a bare folder is named after its last
// element) and --active names into the runs to load and the names to classify with in turn.
// Several runs need --active.
func planRuns(values, active []string) ([]finetune.NamedRun, []string, error) {
	var runs []finetune.NamedRun
	seen := map[string]bool{}
	for _, v := range values {
		name, dir := adapterio.ParseNamed(v)
		if name == "all" {
			return nil, nil, fmt.Errorf("--run %s: the name \"all\" is reserved for --active; name it another way (NAME=RUN)", v)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("--run: two runs named %q; name them NAME=RUN", name)
		}
		seen[name] = true
		runs = append(runs, finetune.NamedRun{Name: name, Dir: dir})
	}
	names := make([]string, len(runs))
	for i, r := range runs {
		names[i] = r.Name
	}
	if len(active) == 0 {
		if len(runs) == 1 {
			return runs, names, nil
		}
		return nil, nil, fmt.Errorf("%d runs loaded (%s): choose with --active NAME (several: --active a,b; or all)", len(runs), strings.Join(names, ", "))
	}
	var out []string
	for _, a := range active {
		switch {
		case a == "all":
			out = append(out, names...)
		case seen[a]:
			out = append(out, a)
		default:
			return nil, nil, fmt.Errorf("--active %s: no --run of that name (loaded: %s; or all)", a, strings.Join(names, ", "))
		}
	}
	return runs, out, nil
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
