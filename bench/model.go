package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/internal/memtune"
	"github.com/singlora/singlora/models"
	_ "github.com/singlora/singlora/models/all" // the model packages register themselves
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/peft"
)

// Model is the model the "model" preset benchmarks: a folder of any registered architecture, or
// a built-in model's name (models.Resolve). The bench command's --model sets it.
var Model string

// BaseDType is how the "model", "llama-1b" and "llama-7b" presets hold the frozen base matrices
// (the bench command's --base-dtype). BaseAuto, the default as for "singlora train", keeps a
// checkpoint's bf16/f16 (a model that cannot hold a 16-bit base gets float32), and makes the
// llama-1b/7b checkpoints bf16 (CheckpointDType).
var BaseDType = hf.BaseAuto

// RecomputeBlocks makes the "model", "llama-1b" and "llama-7b" presets recompute each block in
// the backward (the bench command's --recompute-blocks; models.LoadOptions.RecomputeBlocks).
var RecomputeBlocks bool

// The shape of a "model" step: ModelBatch sequences of ModelSeq tokens (fewer when the model reads
// fewer).
const (
	ModelBatch = 8
	ModelSeq   = 128
)

// ModelWorkload is one training step (forward, backward, AdamW) of the pretrained model Model
// with the method's adapters (rank 8, α 8) on all its linear layers, for the task the registry
// gives it: classification (the encoder and a 2-label head, modules to save) on ModelBatch
// copies of a sentence ModelSeq tokens long, or the causal-LM loss on random token ids [B, L]
// with every position in the loss. GFLOP counts the linear layers only (no attention, no LM
// head).
func ModelWorkload(method string) (Workload, error) {
	m, err := parseMethod(method)
	if err != nil {
		return Workload{}, err
	}
	if Model == "" {
		return Workload{}, fmt.Errorf("preset model: no model given (singlora bench --model DIR, a folder of %s, or a built-in name)", strings.Join(models.ModelTypes(), ", "))
	}
	arch, err := models.Resolve(Model)
	if err != nil {
		return Workload{}, err
	}
	task, err := arch.TaskIn(Model, "") // what the folder is for, as singlora train decides with no --task
	if err != nil {
		return Workload{}, err
	}
	w := Workload{Name: "model/" + string(m), Method: string(m)}
	var shape string
	var gflop, loadSec float64
	var tokens int
	w.Describe = func() (string, float64) { return shape, gflop }
	var store *model.Store
	w.Annotate = func(r *Result) { annotate(r, store, tokens, loadSec) }
	w.Setup = func() (func() error, error) {
		store = model.NewStore()
		cfg := peft.DefaultConfig(m)
		var specs []peft.LinearSpec
		var inputs []*tensors.Tensor
		var step func() (func() error, error)
		batch, seq := ModelBatch, ModelSeq
		switch task {
		case models.CausalLM:
			run, err := newCausalRun(arch, Model, store, cfg, batch, seq, nil)
			if err != nil {
				return nil, err
			}
			seq, specs, loadSec = run.seq, run.specs, run.loadSec
			step = func() (func() error, error) { return run.step, nil }
		default:
			t0 := time.Now()
			enc, err := arch.LoadEncoder(Model, store, models.EncoderOptions{MaxLength: seq, LoadOptions: models.LoadOptions{BaseDType: BaseDType, RecomputeBlocks: RecomputeBlocks}})
			if err != nil {
				return nil, err
			}
			loadSec = time.Since(t0).Seconds()
			memtune.AfterLoad()
			specs = enc.Linears()
			cfg.ModulesToSave = []string{classify.HeadScope}
			inj, err := peft.Inject(cfg, specs)
			if err != nil {
				return nil, err
			}
			t := &classify.Task{Enc: enc, Inj: inj, Store: store, NumClasses: 2, FeatureScale: enc.FeatureScale(), Streams: Streams}
			if err := t.InitHead(1); err != nil {
				return nil, err
			}
			if err := inj.Attach(store); err != nil {
				return nil, err
			}
			text := strings.TrimSpace(strings.Repeat("a good film ", seq)) // at least seq tokens: clipped to seq
			texts := make([]string, batch)
			for i := range texts {
				texts[i] = text
			}
			ids, mask := enc.PadBatch(enc.Tokenize(texts), 16)
			seq = ids.Shape().Dim(1)
			labels := make([]int32, batch)
			for i := range labels {
				labels[i] = int32(i % 2)
			}
			inputs = []*tensors.Tensor{ids, mask, tensors.FromFlatDataAndDimensions(labels, batch)}
			step = func() (func() error, error) { return stepper(store, t.Loss, inputs) }
		}
		fwd, trainable := 0.0, 0.0
		for _, s := range specs {
			fwd += 2 * float64(batch*seq) * float64(s.In*s.Out)
		}
		if peft.TrainsBase(m) {
			trainable = fwd
		}
		shape = fmt.Sprintf("%s %s %s B=%d L=%d, %d linear layers r=%d", Model, arch, task, batch, seq, len(specs), cfg.Rank)
		if RecomputeBlocks {
			shape += " recompute-blocks"
		}
		tokens = batch * seq
		gflop = nominalGFLOP(fwd, trainable)
		return step()
	}
	return w, nil
}

// causalRun is one causal-LM training step built by newCausalRun.
type causalRun struct {
	step    func() error
	specs   []peft.LinearSpec
	seq     int     // the sequence length used (clipped to the positions the model reads)
	loadSec float64 // the wall time of arch.LoadCausalLM
}

// newCausalRun builds the causal-LM training step the way "singlora train" builds it: the model
// in dir loaded into store through the registry (arch.LoadCausalLM, base matrices as BaseDType
// says), cfg's adapters injected on the model's linears and attached, and one AdamW step
// (train.Stepper) of the model's loss on fixed random token ids and targets [batch, seq] (seeded)
// with every position in the loss; after loading, memtune sizes the GC for the weights, as train
// does. logf (nil: quiet) hears when loading starts and ends.
func newCausalRun(arch *models.Arch, dir string, store *model.Store, cfg peft.Config, batch, seq int, logf func(string, ...any)) (causalRun, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	logf("loading %s (%s, --base-dtype %s)", dir, arch, BaseDType)
	t0 := time.Now()
	cm, err := arch.LoadCausalLM(dir, store, models.LoadOptions{BaseDType: BaseDType, RecomputeBlocks: RecomputeBlocks})
	if err != nil {
		return causalRun{}, err
	}
	r := causalRun{loadSec: time.Since(t0).Seconds(), specs: cm.Linears()}
	memtune.AfterLoad() // as singlora train: the GC's heap allowance sized to the loaded weights
	logf("loaded in %.1f s; building the step (the first warm-up step compiles it)", r.loadSec)
	n, _ := cm.MaxPositions()
	r.seq = min(seq, n)
	inj, err := peft.Inject(cfg, r.specs)
	if err != nil {
		return causalRun{}, err
	}
	if err := inj.Attach(store); err != nil {
		return causalRun{}, err
	}
	rng := rand.New(rand.NewPCG(42, 9))
	nTok := batch * r.seq
	ids, targets, mask := make([]int32, nTok), make([]int32, nTok), make([]float32, nTok)
	for i := range ids {
		ids[i], targets[i], mask[i] = int32(rng.IntN(cm.VocabSize())), int32(rng.IntN(cm.VocabSize())), 1
	}
	inputs := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(ids, batch, r.seq),
		tensors.FromFlatDataAndDimensions(targets, batch, r.seq), tensors.FromFlatDataAndDimensions(mask, batch, r.seq)}
	r.step, err = stepper(store, cm.Loss(inj, Streams), inputs)
	return r, err
}

// annotate fills a checkpoint workload's extra fields: tokens per second at the median step, the
// load time, and the dtype the store holds its frozen matrices in (heldDType); Backend gains the
// half-precision product mode and the GC settings from the environment, which change the step's
// time and memory.
func annotate(r *Result, store *model.Store, tokens int, loadSec float64) {
	if r.MsMedian > 0 && tokens > 0 {
		r.TokensPerS = float64(tokens) / (r.MsMedian / 1e3)
	}
	r.LoadSec = loadSec
	if store != nil {
		r.BaseDType = heldDType(store)
	}
	if r.BaseDType == "bf16" || r.BaseDType == "f16" {
		r.Backend += " half-product=" + fastops.DefaultHalfMode.String() // SINGLORA_HALF_PRODUCT
	}
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} { // memtune leaves the GC alone when either is set
		if e := os.Getenv(v); e != "" {
			r.Backend += " " + v + "=" + e
		}
	}
}

// heldDType is the dtype ("bf16", "f16", "f32") of most elements of store's matrices (rank ≥ 2):
// what the base, which dwarfs the adapters, was held in as loaded.
func heldDType(store *model.Store) string {
	count := map[dtypes.DType]int{}
	for v := range store.IterVariables() {
		if v.Shape().Rank() >= 2 {
			count[v.Shape().DType] += v.Shape().Size()
		}
	}
	best := dtypes.Float32
	for dt, n := range count {
		if n > count[best] {
			best = dt
		}
	}
	return map[dtypes.DType]string{dtypes.BFloat16: "bf16", dtypes.Float16: "f16", dtypes.Float32: "f32"}[best]
}
