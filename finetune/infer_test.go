package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/models/bert"
	"github.com/singlora/singlora/train"
)

// trainTinyBERT trains method for 6 steps on a tiny BERT (evaluating every 2 steps, so that best
// and last differ in general) and returns the run folder.
func trainTinyBERT(t *testing.T, method string) string {
	t.Helper()
	words := []string{"good", "bad", "the", "film"}
	var sb strings.Builder
	for i := 0; i < 24; i++ {
		w, label := words[i%2], []string{"pos", "neg"}[i%2]
		js, _ := json.Marshal(map[string]string{"text": fmt.Sprintf("the %s film %d", w, i%3), "label": label})
		sb.Write(append(js, '\n'))
	}
	tmp := t.TempDir()
	trainPath := filepath.Join(tmp, "train.jsonl")
	if err := os.WriteFile(trainPath, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Model, c.Train, c.ValFraction = tinyBERT(t, words), trainPath, 0.25
	c.Method, c.LR, c.HeadLR, c.Steps, c.Batch, c.EvalEvery = method, 1e-2, 1e-2, 6, 4, 2
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(tmp, "run")
	job, err := New(c, run, be, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	job.SetQuiet(true)
	if _, err := job.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	return run
}

// copyRun copies a run folder (so that a test can damage the copy).
func copyRun(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "run")
	copyTree(t, src, dst)
	return dst
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func logProbs(t *testing.T, task *classify.Task, texts []string) [][]float32 {
	t.Helper()
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	p, err := task.NewPredictor(be)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := p.LogProbs(task.Tokenize(texts))
	if err != nil {
		t.Fatal(err)
	}
	return lp
}

func writeHead(t *testing.T, run string, labels []string) {
	t.Helper()
	b, _ := json.Marshal(HeadInfo{Labels: labels, FeatureScale: 1})
	if err := os.WriteFile(filepath.Join(run, HeadFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadClassifierFrom: the weights the default and each --checkpoint choice read, the same
// predictions from RUN/adapter and the best checkpoint, and clear errors for a head.json that
// disagrees with the head, for missing weights and for bad choices.
func TestLoadClassifierFrom(t *testing.T) {
	texts := []string{"the good film", "the bad film"}
	singloraAdapter := "" // a copy of the singlora run's adapter, for the frozen run
	keep := t.TempDir()
	for _, method := range []string{"singlora", "frozen"} {
		t.Run(method, func(t *testing.T) {
			run := trainTinyBERT(t, method)
			adapter := method == "singlora"
			best := filepath.Join(run, train.CheckpointDir, train.BestDir)
			last := filepath.Join(run, train.CheckpointDir, train.LastDir)

			task, w, err := LoadClassifierFrom(run, CheckpointAuto)
			if err != nil {
				t.Fatal(err)
			}
			want := Weights{Dir: filepath.Join(run, AdapterDir)}
			if !adapter {
				want = Weights{Dir: best, Checkpoint: true, Step: checkpointStep(best)}
			}
			if w != want {
				t.Errorf("default weights %+v, want %+v", w, want)
			}
			finished := logProbs(t, task, texts)

			// An unfinished run (no RUN/adapter): the default is the best checkpoint, which
			// predicts what RUN/adapter (the best weights, saved at the end) does.
			unfinished := copyRun(t, run)
			if err := os.RemoveAll(filepath.Join(unfinished, AdapterDir)); err != nil {
				t.Fatal(err)
			}
			ubest := filepath.Join(unfinished, train.CheckpointDir, train.BestDir)
			task, w, err = LoadClassifierFrom(unfinished, CheckpointAuto)
			if err != nil {
				t.Fatal(err)
			}
			if wantDir := ubest; adapter {
				wantDir = filepath.Join(ubest, AdapterDir)
				if w.Dir != wantDir || !w.Checkpoint || !strings.Contains(w.String(), "no "+filepath.Join(unfinished, AdapterDir)) {
					t.Errorf("unfinished run: weights %s, want %s with a note on the missing adapter", w, wantDir)
				}
			} else if w.Dir != wantDir {
				t.Errorf("unfinished run: weights %s, want %s", w, wantDir)
			}
			if got := logProbs(t, task, texts); !reflect.DeepEqual(got, finished) {
				t.Errorf("best checkpoint predicts %v, RUN/adapter %v", got, finished)
			}

			// Explicit choices.
			for _, tc := range []struct {
				choice string
				dir    string
				step   int64
			}{
				{CheckpointLast, last, 6},
				{CheckpointBest, best, checkpointStep(best)},
				{last, last, 6},
				{filepath.Join(train.CheckpointDir, train.LastDir), last, 6}, // relative to the run
			} {
				_, w, err := LoadClassifierFrom(run, tc.choice)
				wantDir := tc.dir
				if adapter {
					wantDir = filepath.Join(tc.dir, AdapterDir)
				}
				if err != nil || w.Dir != wantDir || w.Step != tc.step || !w.Checkpoint {
					t.Errorf("checkpoint %q: weights %+v, %v; want %s at step %d", tc.choice, w, err, wantDir, tc.step)
				}
			}

			// Errors.
			noWeights := copyRun(t, unfinished)
			for _, d := range []string{train.CheckpointDir} {
				if err := os.RemoveAll(filepath.Join(noWeights, d)); err != nil {
					t.Fatal(err)
				}
			}
			file := filepath.Join(run, ConfigFile)
			for _, tc := range []struct {
				name, run, choice string
				head              []string // head.json labels to write into a copy of run; nil: as saved
				want              []string
			}{
				{"more labels than the head", run, "", []string{"neg", "pos", "meh"}, []string{HeadFile, `lists 3 labels ["neg" "pos" "meh"]`, "/head/weight", "has 2 outputs"}},
				{"fewer labels than the head", run, "", []string{"neg"}, []string{HeadFile, "lists 1 label [\"neg\"]", "/head/weight", "has 2 outputs"}},
				{"no labels", run, "", []string{}, []string{HeadFile, "no labels"}},
				{"a label twice", run, "", []string{"pos", "pos"}, []string{HeadFile, `"pos" is listed twice`}},
				{"no saved weights", noWeights, "", nil, []string{"has no saved weights", "checkpoints/best or checkpoints/last"}},
				{"best of a run without checkpoints", noWeights, "best", nil, []string{`checkpoint "best"`, "is not a checkpoint", "the run has: no saved weights"}},
				{"unknown name", run, "nope", nil, []string{`checkpoint "nope": no such folder`, "want best, last, or a checkpoint or adapter folder", "best (step"}},
				{"a file", run, file, nil, []string{"is a file", "checkpoint.safetensors + state.json"}},
				{"a folder of something else", run, t.TempDir(), nil, []string{"neither a checkpoint folder", "adapter_config.json"}},
			} {
				dir := tc.run
				if tc.head != nil {
					dir = copyRun(t, run)
					writeHead(t, dir, tc.head)
				}
				_, _, err := LoadClassifierFrom(dir, tc.choice)
				if err == nil {
					t.Errorf("%s: no error", tc.name)
					continue
				}
				t.Logf("%s: %v", tc.name, err)
				for _, s := range tc.want {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: error %q does not contain %q", tc.name, err, s)
					}
				}
			}
			if adapter {
				singloraAdapter = filepath.Join(keep, AdapterDir)
				copyTree(t, filepath.Join(run, AdapterDir), singloraAdapter)
				noAdapter := copyRun(t, run)
				if err := os.RemoveAll(filepath.Join(noAdapter, train.CheckpointDir, train.BestDir, AdapterDir)); err != nil {
					t.Fatal(err)
				}
				_, _, err := LoadClassifierFrom(noAdapter, CheckpointBest)
				if err == nil || !strings.Contains(err.Error(), "has no adapter/ folder") {
					t.Errorf("checkpoint without its adapter: error %v", err)
				}
			} else if singloraAdapter != "" {
				_, _, err := LoadClassifierFrom(run, singloraAdapter)
				if err == nil || !strings.Contains(err.Error(), "is an adapter folder, but the run's method saves no adapter") {
					t.Errorf("adapter folder for a frozen run: error %v", err)
				}
			}
		})
	}
}

// TestBERTNotesClippedTexts: the BERT encoder counts the texts longer than it reads (64 tokens
// for the tiny model, [CLS] and [SEP] included), for Task.Tokenize's warning.
func TestBERTNotesClippedTexts(t *testing.T) {
	words := []string{"good", "bad"}
	enc, err := bert.LoadEncoder(tinyBERT(t, words), model.NewStore(), 0)
	if err != nil {
		t.Fatal(err)
	}
	long62 := strings.TrimSpace(strings.Repeat("good ", 62)) // 64 tokens with [CLS] and [SEP]: not clipped
	long63 := long62 + " bad"
	tests := []struct {
		texts []string
		want  string
	}{
		{[]string{"good", long62}, ""},
		{[]string{"good", long63, long63 + " good", long62}, "warning: 2 of 4 texts are longer than the encoder's limit of 64 tokens and were clipped to it\n"},
	}
	for _, tc := range tests {
		var w strings.Builder
		task := &classify.Task{Enc: enc, Warnings: &w}
		rows := task.Tokenize(tc.texts)
		if !reflect.DeepEqual(rows, enc.Tokenize(tc.texts)) {
			t.Errorf("Task.Tokenize and the encoder's Tokenize disagree")
		}
		if w.String() != tc.want {
			t.Errorf("warned %q, want %q", w.String(), tc.want)
		}
	}
}
