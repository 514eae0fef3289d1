package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/models"
	_ "github.com/singlora/singlora/models/all" // the model packages register themselves
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/peft"
)

// Model is the model the "model" preset benchmarks: a folder of any registered architecture, or
// a built-in model's name (models.Resolve). The bench command's --model sets it.
var Model string

// BaseDType is how the "model" preset holds the frozen base matrices (the bench command's
// --base-dtype; "" is float32, as before half bases existed).
var BaseDType hf.BaseDType

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
	task, err := arch.TaskFor(models.Classify)
	if err != nil {
		return Workload{}, err
	}
	w := Workload{Name: "model/" + string(m), Method: string(m)}
	var shape string
	var gflop float64
	w.Describe = func() (string, float64) { return shape, gflop }
	w.Setup = func() (func() error, error) {
		store := model.NewStore()
		cfg := peft.DefaultConfig(m)
		var specs []peft.LinearSpec
		var inputs []*tensors.Tensor
		var step func() (func() error, error)
		batch, seq := ModelBatch, ModelSeq
		switch task {
		case models.CausalLM:
			cm, err := arch.LoadCausalLM(Model, store, models.LoadOptions{BaseDType: BaseDType})
			if err != nil {
				return nil, err
			}
			n, _ := cm.MaxPositions()
			seq, specs = min(seq, n), cm.Linears()
			inj, err := peft.Inject(cfg, specs)
			if err != nil {
				return nil, err
			}
			if err := inj.Attach(store); err != nil {
				return nil, err
			}
			rng := rand.New(rand.NewPCG(42, 9))
			ids, targets, mask := make([]int32, batch*seq), make([]int32, batch*seq), make([]float32, batch*seq)
			for i := range ids {
				ids[i], targets[i], mask[i] = int32(rng.IntN(cm.VocabSize())), int32(rng.IntN(cm.VocabSize())), 1
			}
			inputs = []*tensors.Tensor{tensors.FromFlatDataAndDimensions(ids, batch, seq),
				tensors.FromFlatDataAndDimensions(targets, batch, seq), tensors.FromFlatDataAndDimensions(mask, batch, seq)}
			loss := cm.Loss(inj, Streams)
			step = func() (func() error, error) { return stepper(store, loss, inputs) }
		default:
			enc, err := arch.LoadEncoder(Model, store, models.EncoderOptions{MaxLength: seq, LoadOptions: models.LoadOptions{BaseDType: BaseDType}})
			if err != nil {
				return nil, err
			}
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
		gflop = nominalGFLOP(fwd, trainable)
		return step()
	}
	return w, nil
}
