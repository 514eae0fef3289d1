package sweep

import (
	"context"
	"github.com/singlora/singlora/corpora/corporatest"
	"io"
	"os"
	"testing"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/pretrain"
)

// TestDecoderExperiments: the decoder experiments' data step pretrains a (tiny) base and writes
// Moby-Dick for it; their cells are the grids EXPERIMENTS.md reports, every cell scored on the
// test chapters with no validation set; and one cell trains to a summary with a finite test
// perplexity below the base's own and no validation metrics.
func TestDecoderExperiments(t *testing.T) {
	cache := corporatest.Cache(t)
	tiny := pretrain.Tiny()
	env := Env{Cache: cache, Dir: t.TempDir(), Backend: backend.Get, Out: io.Discard, Quiet: true, Pretrain: &tiny}
	seeds := []uint64{1, 2, 3}
	for _, tc := range []struct {
		name  string
		cells int
		lrs   int
		task  string
	}{{"decoder-lr", 4 * 5 * 3, 5, "causal-lm"}, {"decoder-budget", 4 * 3, 1, "causal-lm"}, {"decoder-init-ramp", 5 * 3, 1, "causal-lm"},
		{"decoder-classify", 4 * 4 * 3, 4, "classify"}} {
		if tc.task == "classify" {
			if _, err := os.Stat(corpora.FortunesDir); err != nil {
				t.Logf("%s: skipped: Debian's fortunes are not installed (apt-get install fortunes)", tc.name)
				continue
			}
		}
		e, err := Lookup(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		base, err := e.Prepare(env)
		if err != nil {
			t.Fatal(err)
		}
		if tc.task == "classify" {
			if base.Task != "classify" || base.Test == "" || base.Val == "" || base.Steps != FortunesSteps || base.MaxLength != FortunesMaxLength {
				t.Fatalf("%s: base config task %q test %q val %q steps %d max_length %d", tc.name, base.Task, base.Test, base.Val, base.Steps, base.MaxLength)
			}
		} else if base.Task != "causal-lm" || base.Test == "" || base.Val != "" || base.ValFraction != 0 || base.Steps != DecoderSteps {
			t.Fatalf("%s: base config task %q test %q val %q val_fraction %g steps %d", tc.name, base.Task, base.Test, base.Val, base.ValFraction, base.Steps)
		}
		cells := e.Cells(base, seeds, nil)
		names, lrs := map[string]bool{}, map[float64]bool{}
		for _, c := range cells {
			if names[c.Name] {
				t.Fatalf("%s: two cells named %s", tc.name, c.Name)
			}
			names[c.Name], lrs[c.Cfg.LR] = true, true
			if err := c.Cfg.Validate(); err != nil {
				t.Fatalf("%s: %s: %v", tc.name, c.Name, err)
			}
		}
		if len(cells) != tc.cells || len(lrs) != tc.lrs {
			t.Fatalf("%s: %d cells over %d learning rates, want %d over %d", tc.name, len(cells), len(lrs), tc.cells, tc.lrs)
		}
	}
	e, _ := Lookup("decoder-lr")
	base, err := e.Prepare(env)
	if err != nil {
		t.Fatal(err)
	}
	base.Steps = 12
	cell := e.Cells(base, []uint64{1}, []float64{3e-2})[0]
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	score := func(c finetune.Config, dir string) *finetune.Summary {
		job, err := finetune.New(c, dir, be, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		job.SetQuiet(true)
		s, err := job.Run(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := score(cell.Cfg, t.TempDir())
	zero := cell.Cfg
	zero.LR = 1e-12 // the adapter barely moves: the base's own test perplexity
	s0 := score(zero, t.TempDir())
	t.Logf("test %v (base ≈ %v)", s.Test, s0.Test)
	if len(s.Val) != 0 || !(s.Test["perplexity"] > 1) || !(s.Test["perplexity"] < s0.Test["perplexity"]) {
		t.Fatalf("summary val %v test %v, want no validation metrics and a test perplexity below the base's %v", s.Val, s.Test, s0.Test)
	}
}
