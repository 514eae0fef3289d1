package pretrain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/singlora/singlora/corpora/corporatest"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/tokenizer/bpe"
	"github.com/singlora/singlora/train"
)

func be(t testing.TB) compute.Backend {
	t.Helper()
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// micro is Tiny with fewer steps: seconds per run.
func micro() Config {
	c := Tiny()
	c.Steps, c.Warmup, c.EvalEvery, c.CheckpointEvery = 8, 2, 4, 2
	return c
}

func run(t *testing.T, c Config, o Options) *Result {
	t.Helper()
	if o.Backend == nil {
		o.Backend = be(t)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	o.Quiet = true
	res, err := Run(context.Background(), c, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeterministicAndCached: two runs of one config in two caches write byte-identical
// folders; a third run in the first cache reuses the folder without training; another seed
// gives another key and other weights.
func TestDeterministicAndCached(t *testing.T) {
	c := micro()
	a := run(t, c, Options{Cache: corporatest.Cache(t)})
	cacheB := corporatest.Cache(t)
	b := run(t, c, Options{Cache: cacheB})
	if a.Reused || b.Reused || a.Summary.Key != b.Summary.Key {
		t.Fatalf("keys %s, %s (reused %v %v)", a.Summary.Key, b.Summary.Key, a.Reused, b.Reused)
	}
	for _, f := range []string{"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		if !bytes.Equal(readFile(t, filepath.Join(a.Dir, f)), readFile(t, filepath.Join(b.Dir, f))) {
			t.Errorf("%s differs between two runs of the same config", f)
		}
	}
	if a.Summary.HeldOut != b.Summary.HeldOut || a.Summary.Baselines != b.Summary.Baselines {
		t.Errorf("held-out scores differ: %+v vs %+v", a.Summary.HeldOut, b.Summary.HeldOut)
	}
	again := run(t, c, Options{Cache: cacheB})
	if !again.Reused || again.Dir != b.Dir || again.Summary.HeldOut != b.Summary.HeldOut {
		t.Errorf("third run: reused %v, dir %s (want %s)", again.Reused, again.Dir, b.Dir)
	}
	c2 := c
	c2.Seed = 2
	o := run(t, c2, Options{Cache: cacheB})
	if o.Summary.Key == b.Summary.Key || bytes.Equal(readFile(t, filepath.Join(o.Dir, "model.safetensors")), readFile(t, filepath.Join(b.Dir, "model.safetensors"))) {
		t.Errorf("seed 2: key %s (seed 1: %s), same weights", o.Summary.Key, b.Summary.Key)
	}
	c3 := c
	c3.EvalEvery, c3.EvalWindows, c3.CheckpointEvery = 3, 2, 7
	if k := keyIn(t, c3, cacheB); k != b.Summary.Key {
		t.Errorf("evaluation and checkpoint settings changed the key: %s vs %s", k, b.Summary.Key)
	}
}

// keyIn is the key of c with the tokenizer Run would use in cache.
func keyIn(t *testing.T, c Config, cache string) string {
	t.Helper()
	p, err := Plan(c, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.Key
}

// TestResumeEqualsUninterrupted stops a run after 5 batches (step 5's checkpoint is the last
// one written at CheckpointEvery 2 … the stop itself saves step 5), refuses to start it again
// without --resume, resumes it, and compares the folder with an uninterrupted run's.
func TestResumeEqualsUninterrupted(t *testing.T) {
	c := micro()
	whole := run(t, c, Options{Cache: corporatest.Cache(t)})
	cache := corporatest.Cache(t)
	_, err := Run(context.Background(), c, Options{Cache: cache, Backend: be(t), Out: io.Discard, Quiet: true, stopAfterBatches: 5})
	if !errors.Is(err, train.ErrInterrupted) || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("interrupted run: %v, want ErrInterrupted naming --resume", err)
	}
	if st, ok := train.ReadState(filepath.Join(Dir(cache, whole.Summary.Key)+".work", "run", train.CheckpointDir, train.LastDir)); !ok || st.Step != 5 {
		t.Fatalf("checkpoint after the stop: %+v %v, want step 5", st, ok)
	}
	if _, err := Run(context.Background(), c, Options{Cache: cache, Backend: be(t), Out: io.Discard, Quiet: true}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("restart without --resume: %v, want a refusal naming --resume", err)
	}
	resumed := run(t, c, Options{Cache: cache, Resume: true})
	for _, f := range []string{"model.safetensors", "tokenizer.json"} {
		if !bytes.Equal(readFile(t, filepath.Join(whole.Dir, f)), readFile(t, filepath.Join(resumed.Dir, f))) {
			t.Errorf("%s: the resumed run differs from the uninterrupted one", f)
		}
	}
	if whole.Summary.HeldOut != resumed.Summary.HeldOut || whole.Summary.TokensSeen != resumed.Summary.TokensSeen {
		t.Errorf("held-out %+v vs %+v, tokens %d vs %d", whole.Summary.HeldOut, resumed.Summary.HeldOut, whole.Summary.TokensSeen, resumed.Summary.TokensSeen)
	}
	stripWall := func(b []byte) string {
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if i := strings.Index(l, `"wall_seconds"`); i >= 0 {
				l = l[:i]
			}
			lines = append(lines, l)
		}
		return strings.Join(lines, "\n")
	}
	if a, b := stripWall(readFile(t, filepath.Join(whole.Dir, MetricsFile))), stripWall(readFile(t, filepath.Join(resumed.Dir, MetricsFile))); a != b {
		t.Errorf("metrics differ (wall clock aside):\n%s\nvs\n%s", a, b)
	}
}

// TestFolderLoadsWithSameLogits loads the written folder through the model registry (Resolve,
// LoadCausalLM, the tokenizer) and checks its logits on real held-out text equal the in-memory
// trained model's bit for bit, and that the loader's tokenizer encodes like the training data.
func TestFolderLoadsWithSameLogits(t *testing.T) {
	c := micro()
	cache := corporatest.Cache(t)
	res := run(t, c, Options{Cache: cache})
	arch, err := models.Resolve(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if arch.Name != "llama" || arch.DefaultTask(res.Dir) != models.CausalLM {
		t.Fatalf("resolved as %s / %s", arch.Name, arch.DefaultTask(res.Dir))
	}
	store := model.NewStore()
	cm, err := arch.LoadCausalLM(res.Dir, store, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.VocabSize() != c.VocabSize || cm.EOS() != 1 {
		t.Errorf("vocab %d, EOS %d", cm.VocabSize(), cm.EOS())
	}
	tok, err := arch.LoadTokenizer(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := corpora.SOTU(fetch.StdlibDatasets.Dir(cache))
	_, held := corpora.SOTUSplit(all[:c.Addresses])
	text := held[0].Text[:400]
	ids := tok.EncodeWithSpecial(text)
	corp, err := loadCorpus(c, fetch.StdlibDatasets.Dir(cache), cache, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]int{0}, corp.Tok.Encode(text)...); !equalInts(ids, want) {
		t.Fatalf("the loader's tokenizer gives %v…, training used %v…", ids[:8], want[:8])
	}
	ids = ids[:c.Seq]
	lc, err := llama.LoadConfig(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	lc.TieEmbeddings = true
	got := logits(t, lc, store, ids)
	want := logits(t, lc, res.Store, ids)
	if len(got) != c.Seq*c.VocabSize {
		t.Fatalf("%d logits", len(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("logit %d: folder %v, in memory %v", i, got[i], want[i])
		}
	}
}

func logits(t *testing.T, c *llama.Config, store *model.Store, ids []int) []float32 {
	t.Helper()
	v := make([]int32, len(ids))
	for i, id := range ids {
		v[i] = int32(id)
	}
	exec, err := model.NewExec(be(t), store, func(scope *model.Scope, ids *Node) *Node {
		return llama.Logits(c, nil, scope, ids, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Call(tensors.FromFlatDataAndDimensions(v, 1, len(ids)))
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out[0])
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLossFallsOnRealText: 80 steps of the tiny model on real addresses bring the held-out loss
// well below its start (ln 512 ≈ 6.24 for uniform predictions) and below the unigram baseline.
func TestLossFallsOnRealText(t *testing.T) {
	c := Tiny()
	c.Steps, c.Warmup, c.LR, c.EvalEvery, c.CheckpointEvery = 80, 8, 1e-2, 80, 0
	res := run(t, c, Options{Cache: corporatest.Cache(t)})
	m := readFile(t, filepath.Join(res.Dir, MetricsFile))
	lines := strings.Split(strings.TrimSpace(string(m)), "\n")
	if len(lines) != 80 {
		t.Fatalf("%d metric lines, want 80", len(lines))
	}
	first, last := lossOf(t, lines[0]), lossOf(t, lines[len(lines)-1])
	s := res.Summary
	if !(last < first-1) || !(s.HeldOut.Loss < math.Log(float64(c.VocabSize))-1) || !(s.HeldOut.Perplexity < s.Baselines.Unigram.Perplexity) {
		t.Errorf("training loss %.3f → %.3f, held-out loss %.3f (uniform %.3f), perplexity %.1f vs unigram %.1f",
			first, last, s.HeldOut.Loss, math.Log(float64(c.VocabSize)), s.HeldOut.Perplexity, s.Baselines.Unigram.Perplexity)
	}
	if !(s.Baselines.Bigram.Perplexity < s.Baselines.Unigram.Perplexity) || s.HeldOut.Tokens != s.Corpus.HeldOutWindows*c.Seq {
		t.Errorf("bigram %.1f, unigram %.1f; %d held-out targets for %d windows", s.Baselines.Bigram.Perplexity, s.Baselines.Unigram.Perplexity, s.HeldOut.Tokens, s.Corpus.HeldOutWindows)
	}
	t.Logf("training loss %.3f → %.3f; held-out perplexity %.1f, unigram %.1f, bigram %.1f", first, last, s.HeldOut.Perplexity, s.Baselines.Unigram.Perplexity, s.Baselines.Bigram.Perplexity)
	if s.TokensSeen != 80*int64(c.Batch*c.Seq) || s.Params != c.Params() {
		t.Errorf("tokens seen %d, params %d (want %d)", s.TokensSeen, s.Params, c.Params())
	}
}

func lossOf(t *testing.T, line string) float64 {
	t.Helper()
	var m train.Metric
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	return m.Loss
}

func TestValidateNamesTheFlag(t *testing.T) {
	for flag, edit := range map[string]func(*Config){
		"--vocab":     func(c *Config) { c.VocabSize = 200 },
		"--heads":     func(c *Config) { c.Heads = 3 },
		"--kv-heads":  func(c *Config) { c.KVHeads = 3 },
		"--warmup":    func(c *Config) { c.Warmup = c.Steps },
		"--lr":        func(c *Config) { c.LR = math.NaN() },
		"--seq":       func(c *Config) { c.Seq = 1 },
		"--addresses": func(c *Config) { c.Addresses = 5 },
		"corpus":      func(c *Config) { c.Corpus = "moby" },
	} {
		c := Tiny()
		edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: %v", flag, err)
		}
	}
	for name, mk := range Presets {
		if err := mk().Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
}

// TestParams counts the small preset's parameters by hand: embedding 2048·256, per layer q and o
// 256·256 each, k and v 256·128 each, gate/up/down 256·704 each, two norms of 256; final norm.
func TestParams(t *testing.T) {
	c := Small()
	want := 2048*256 + 4*(2*256*256+2*256*128+3*256*704+2*256) + 256
	if c.Params() != want {
		t.Errorf("Params %d, want %d", c.Params(), want)
	}
	n := 0
	for _, s := range tensorList(c) {
		k := 1
		for _, d := range s.shape {
			k *= d
		}
		n += k
	}
	if n != want {
		t.Errorf("tensorList holds %d values, want %d", n, want)
	}
}

// TestWriteMobyDick: the pieces of each split are the chapters' texts, in order, whole (up to
// the whitespace-only pieces dropped), and each fits the base's positions with <s> and </s>.
func TestWriteMobyDick(t *testing.T) {
	cache := corporatest.Cache(t)
	base := run(t, micro(), Options{Cache: cache})
	out := t.TempDir()
	d, err := WriteMobyDick(fetch.StdlibDatasets.Dir(cache), base.Dir, out, 5)
	if err != nil {
		t.Fatal(err)
	}
	chapters, _ := corpora.MobyDick(fetch.StdlibDatasets.Dir(cache))
	train, val, test := corpora.MobyDickSplit(chapters)
	tok := base.Summary.corpusTok(t, base.Dir)
	for i, part := range []struct {
		path string
		cs   []corpora.Chapter
	}{{d.Train, train}, {d.Val, val}, {d.Test, test}} {
		var got strings.Builder
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(string(readFile(t, part.path))), "\n") {
			var ex struct{ Prompt, Completion string }
			if err := json.Unmarshal([]byte(line), &ex); err != nil || ex.Prompt != "" || len(ex.Completion) > MobyDickChunkBytes ||
				len(tok.Encode(ex.Completion))+2 > micro().Seq && len(ex.Completion) > 1 {
				t.Fatalf("%s: %v %.40q", part.path, err, line)
			}
			got.WriteString(ex.Completion)
			n++
		}
		if strings.Join(strings.Fields(got.String()), " ") != strings.Join(strings.Fields(strings.Join(corpora.ChapterTexts(part.cs), "")), " ") || n != d.Examples[i] {
			t.Errorf("%s: the pieces (%d) do not make the chapters back", part.path, n)
		}
	}
	var c map[string]any
	if err := json.Unmarshal(readFile(t, d.Config), &c); err != nil || c["task"] != "causal-lm" || c["test"] != d.Test || !filepath.IsAbs(d.Test) || c["val"] != nil || c["eval_every"] != 5.0 ||
		c["steps"] != 5.0 || c["max_length"] != float64(micro().Seq) {
		t.Errorf("sweep.json: %v %v", err, c)
	}
}

func (s Summary) corpusTok(t *testing.T, dir string) *bpe.Tokenizer {
	t.Helper()
	tok, err := bpe.FromJSON(readFile(t, filepath.Join(dir, "tokenizer.json")))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
