package finetune

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/data"
	"github.com/singlora/singlora/internal/memtune"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/hftok"
	"github.com/singlora/singlora/train"
)

// causalData is tokenised prompt/completion pairs.
type causalData struct {
	prompts, completions [][]int
	pad, padTo, maxLen   int
}

func (d *causalData) Len() int { return len(d.prompts) }

// NumTokens implements train.TokenCounter.
func (d *causalData) NumTokens(idx []int) int {
	n := 0
	for _, i := range idx {
		n += len(d.prompts[i]) + len(d.completions[i])
	}
	return n
}

func (d *causalData) length(idx []int) int {
	longest := 1
	for _, i := range idx {
		longest = max(longest, len(d.prompts[i])+len(d.completions[i]))
	}
	l := (longest + d.padTo - 1) / d.padTo * d.padTo
	return min(l, d.maxLen)
}

func (d *causalData) Batch(idx []int) ([]*tensors.Tensor, error) {
	ps := make([][]int, len(idx))
	cs := make([][]int, len(idx))
	for i, j := range idx {
		ps[i], cs[i] = d.prompts[j], d.completions[j]
	}
	ids, tg, mask, err := lm.CausalBatch(ps, cs, d.length(idx), d.pad)
	if err != nil {
		return nil, err
	}
	return []*tensors.Tensor{ids, tg, mask}, nil
}

// tokenizePairs tokenises examples: prompt (with BOS when the tokenizer has one) and completion
// (with EOS), and checks every pair fits maxLen.
func tokenizePairs(tok *hftok.Tokenizer, ex []data.Example, maxLen int) (*causalData, error) {
	d := &causalData{pad: max(tok.Pad, 0), padTo: 16, maxLen: maxLen}
	if tok.Pad < 0 && tok.EOS >= 0 {
		d.pad = tok.EOS
	}
	for _, e := range ex {
		p := tok.Encode(e.Prompt)
		if tok.BOS >= 0 {
			p = append([]int{tok.BOS}, p...)
		}
		c := tok.Encode(e.Completion)
		if tok.EOS >= 0 {
			c = append(c, tok.EOS)
		}
		if len(p) == 0 {
			return nil, fmt.Errorf("%s:%d: the prompt has no tokens (a causal LM needs at least one)", e.File, e.Line)
		}
		if len(p)+len(c) > maxLen {
			return nil, fmt.Errorf("%s:%d: %d tokens, more than --max-length %d", e.File, e.Line, len(p)+len(c), maxLen)
		}
		d.prompts, d.completions = append(d.prompts, p), append(d.completions, c)
	}
	return d, nil
}

// CausalJob fine-tunes a causal LM on prompt/completion pairs (loss on the completion only).
type CausalJob struct {
	Cfg     Config
	Dir     string
	Backend compute.Backend
	Store   *model.Store
	Inj     *peft.Injection
	Runner  *train.Runner
	val     *causalData
	test    *causalData // nil without a test set
	loss    train.LossFn
	out     io.Writer
	total   int64
}

// PrepareCausal loads the causal LM c.Model names (a Hugging Face folder of a registered causal
// LM, see models.Resolve) and the completion data.
func PrepareCausal(c Config, dir string, backend compute.Backend, out io.Writer) (*CausalJob, error) {
	if out == nil {
		out = os.Stderr
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := data.Options{PromptColumn: c.PromptColumn, CompletionColumn: c.CompletionColumn}
	trainEx, err := data.LoadCompletion(c.Train, opts)
	if err != nil {
		return nil, err
	}
	var valEx []data.Example
	if c.Val != "" {
		if valEx, err = data.LoadCompletion(c.Val, opts); err != nil {
			return nil, err
		}
	} else if c.ValFraction > 0 && len(trainEx) >= 10 {
		parts, err := data.StratifiedSplit(trainEx, []float64{1 - c.ValFraction, c.ValFraction}, c.Seed)
		if err != nil {
			return nil, err
		}
		trainEx, valEx = parts[0], parts[1]
	}
	var testEx []data.Example
	if c.Test != "" {
		if testEx, err = data.LoadCompletion(c.Test, opts); err != nil {
			return nil, err
		}
	}
	if err := checkBatch(c, len(trainEx)); err != nil {
		return nil, err
	}
	arch, err := models.Resolve(c.Model)
	if err != nil {
		return nil, err
	}
	tok, err := arch.LoadTokenizer(c.Model)
	if err != nil {
		return nil, err
	}
	lo, err := c.LoadOptions()
	if err != nil {
		return nil, err
	}
	store := model.NewStore()
	cm, err := arch.LoadCausalLM(c.Model, store, lo)
	if err != nil {
		return nil, err
	}
	memtune.AfterLoad() // a large model's weights must not double the heap's growth allowance
	maxLen := c.MaxLength
	if maxLen <= 0 {
		maxLen = 256
	}
	td, err := tokenizePairs(tok, trainEx, maxLen)
	if err != nil {
		return nil, err
	}
	vd, err := tokenizePairs(tok, valEx, maxLen)
	if err != nil {
		return nil, err
	}
	var testD *causalData
	if c.Test != "" {
		if testD, err = tokenizePairs(tok, testEx, maxLen); err != nil {
			return nil, err
		}
		if testD.Len() == 0 {
			return nil, fmt.Errorf("test set %s has no examples", c.Test)
		}
	}
	longest := 1
	for i := range td.prompts {
		longest = max(longest, len(td.prompts[i])+len(td.completions[i]))
	}
	if err := checkStepMemory(c, cm.Linears(), min((longest+td.padTo-1)/td.padTo*td.padTo, maxLen), cm.VocabSize()); err != nil {
		return nil, err
	}
	stepsPerEpoch, total := c.StepCounts(len(trainEx))
	pc, err := c.PeftConfig(total)
	if err != nil {
		return nil, err
	}
	inj, err := peft.Inject(pc, cm.Linears())
	if err != nil {
		return nil, err
	}
	if err := CheckRank(inj); err != nil {
		return nil, err
	}
	if err := inj.Attach(store); err != nil {
		return nil, err
	}
	if err := store.SetRNGStateFromSeed(int64(c.Seed)); err != nil {
		return nil, err
	}
	opt, err := c.Optimizer(total, inj.OptimizerGroups(c.WeightDecay))
	if err != nil {
		return nil, err
	}
	j := &CausalJob{Cfg: c, Dir: dir, Backend: backend, Store: store, Inj: inj, val: vd, test: testD, loss: cm.Loss(inj, c.StreamCount()), out: out, total: total}
	evalEvery := c.EvalEvery
	if evalEvery <= 0 {
		evalEvery = max(1, stepsPerEpoch)
	}
	early := c.EarlyMetric
	if early == "" || early == "accuracy" {
		early = "loss"
	}
	j.Runner = &train.Runner{
		Cfg: train.RunConfig{Dir: dir, TotalSteps: total, BatchSize: c.Batch, AccumSteps: c.Accum, Seed: c.Seed,
			EvalEvery: evalEvery, CheckpointEvery: c.CheckpointEvery,
			Early: train.EarlyStopping{Metric: early, Maximize: false, Patience: c.Patience}},
		Backend: backend, Store: store, Loss: j.loss, Opt: opt, Train: td, Ramp: inj.Config.Ramp, Out: out,
	}
	if vd.Len() > 0 {
		j.Runner.Eval = func(*model.Store) (map[string]float64, error) { return j.Evaluate() }
	}
	if inj.Config.Method.HasAdapter() {
		j.Runner.SaveExtra = func(d string) error {
			return adapterio.SaveFromStore(filepath.Join(d, AdapterDir), inj, store, c.Model)
		}
	}
	return j, nil
}

// Evaluate returns the validation completion loss (token-weighted mean) and perplexity.
func (j *CausalJob) Evaluate() (map[string]float64, error) { return j.evaluate(j.val, "validation") }

// EvaluateTest returns the test set's completion loss and perplexity (an error without one).
func (j *CausalJob) EvaluateTest() (map[string]float64, error) {
	if j.test == nil {
		return nil, fmt.Errorf("no test set: give the config's test file")
	}
	return j.evaluate(j.test, "test")
}

// evaluate returns d's completion loss, the mean over its completion tokens of −log p(token), and
// the perplexity exp(loss).
func (j *CausalJob) evaluate(d *causalData, what string) (map[string]float64, error) {
	exec, err := train.NewInference(j.Backend, j.Store, func(scope *model.Scope, xs []*Node) []*Node {
		l := j.loss(scope, xs)
		return []*Node{ConvertDType(l, dtypes.Float64), ConvertDType(ReduceAllSum(xs[2]), dtypes.Float64)}
	})
	if err != nil {
		return nil, err
	}
	const bs = 16
	var sum, n float64
	for start := 0; start < d.Len(); start += bs {
		idx := make([]int, 0, bs)
		for i := start; i < min(start+bs, d.Len()); i++ {
			idx = append(idx, i)
		}
		in, err := d.Batch(idx)
		if err != nil {
			return nil, err
		}
		outs, err := exec.Call(in[0], in[1], in[2])
		if err != nil {
			return nil, err
		}
		tokens := tensors.ToScalar[float64](outs[1])
		sum += tensors.ToScalar[float64](outs[0]) * tokens
		n += tokens
	}
	if n == 0 {
		return nil, fmt.Errorf("%s set has no completion tokens", what)
	}
	return map[string]float64{"loss": sum / n, "perplexity": math.Exp(sum / n)}, nil
}

// Run trains (or resumes), then evaluates the best checkpoint (the last without a validation
// set) on the validation and test sets and writes summary.json and, for adapter methods,
// RUN/adapter.
func (j *CausalJob) Run(ctx context.Context, resume bool) (*Summary, error) {
	return runFolder(ctx, resume, runParts{
		cfg: j.Cfg, dir: j.Dir, runner: j.Runner, inj: j.Inj, store: j.Store, out: j.out, total: j.total,
		baseName: j.Cfg.Model,
		score: func(s *Summary) error {
			var err error
			if j.val.Len() > 0 {
				if s.Val, err = j.Evaluate(); err != nil {
					return err
				}
			}
			if j.test != nil {
				s.Test, err = j.EvaluateTest()
			}
			return err
		},
	})
}

// SetQuiet switches the progress bar to log lines.
func (j *CausalJob) SetQuiet(q bool) { j.Runner.Cfg.Quiet = q }

// Params implements Runnable.
func (j *CausalJob) Params() peft.Report { return j.Inj.Report(j.Store) }

func loadBest(dir string, store *model.Store) error {
	ck := filepath.Join(dir, train.CheckpointDir, train.BestDir)
	if _, err := os.Stat(ck); err != nil {
		ck = filepath.Join(dir, train.CheckpointDir, train.LastDir)
	}
	_, err := train.LoadCheckpoint(ck, store)
	return err
}
