// Package models is the registry of the model architectures singlora fine-tunes. Each model
// package registers itself from an init function (Register): the config.json "model_type" and
// "architectures" values it loads, the tasks it has a head for (Classify: a sentence Encoder;
// CausalLM: next-token logits, the completion loss and generation), its loaders and what it
// tokenizes with. Package models/all imports every model package; the commands import it and
// resolve a --model value with Resolve:
//
//	arch, err := models.Resolve("./tiny-llama") // reads ./tiny-llama/config.json: model_type "llama"
//	lm, err := arch.LoadCausalLM("./tiny-llama", store, models.LoadOptions{BaseDType: hf.BaseAuto})
//
// An unknown model type is an error that lists the known ones. Adding a model is one package
// that calls Register and one blank import in models/all.
package models

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/hftok"
	"github.com/singlora/singlora/train"
)

// Task is what a model is fine-tuned for; its values are `singlora train --task`'s.
type Task string

// The tasks. A model supports a task when its Arch has the task's loader.
const (
	// Classify is text → label: the model is an Encoder of sentence features, on which
	// classify.Task trains a linear head.
	Classify Task = "classify"
	// CausalLM is prompt → completion: the model is a CausalModel (next-token logits), trained
	// on the completion loss, and can generate.
	CausalLM Task = "causal-lm"
)

// TokenizerJSON is Arch.Tokenizer for a model folder tokenised by its tokenizer.json (Hugging
// Face tokenizers: WordPiece, BPE, Unigram; read by tokenizer/hftok).
const TokenizerJSON = "tokenizer.json"

// Arch is one model package's registration.
type Arch struct {
	// Name names the architecture family in messages ("llama"). A built-in model is selected by
	// it (--model use).
	Name string
	// Package is the implementing package, for messages ("models/llama").
	Package string
	// ModelTypes are the config.json "model_type" values the package loads ("llama", "mistral",
	// "qwen2"). A built-in model has none.
	ModelTypes []string
	// Architectures are the config.json "architectures" values it loads; they identify a folder
	// whose config.json has no "model_type".
	Architectures []string
	// Builtin marks a model that is not a Hugging Face folder: it is named by Name on the command
	// line, and its loaders get dir "" (the model finds its own files).
	Builtin bool
	// BaseModel is what adapters record as base_model_name_or_path for a built-in model (for a
	// folder it is the folder).
	BaseModel string
	// Tokenizer is what the model tokenises with: TokenizerJSON, or a description of its own
	// tokenizer (which its Encoder applies).
	Tokenizer string
	// Encoder loads the model in dir into store as a sentence encoder for Classify; nil when the
	// package has no such head.
	Encoder func(dir string, store *model.Store, opts EncoderOptions) (Encoder, error)
	// CausalLM loads the model in dir into store as a causal language model; nil when the
	// package has no causal-LM head.
	CausalLM func(dir string, store *model.Store, opts LoadOptions) (CausalModel, error)
	// DefaultTask says what the folder dir is for when no task is asked (e.g. a Llama folder:
	// classify for *ForSequenceClassification, causal-lm otherwise); nil means the first of Tasks.
	DefaultTask func(dir string) Task
	// HalfBase marks a model whose graphs accept 16-bit base matrices (LoadOptions.BaseDType
	// other than f32); the loaders of the others refuse them (CheckBase).
	HalfBase bool
}

// LoadOptions are the settings every loader takes.
type LoadOptions struct {
	// BaseDType is how the frozen base matrices are held: hf.BaseAuto (the checkpoint's 16-bit
	// dtype, else float32), bf16, f16 or f32 ("" is f32). Adapters, heads, norms, biases and the
	// optimizer state are always float32.
	BaseDType hf.BaseDType
	// RecomputeBlocks recomputes each transformer block's activations in the backward instead of
	// keeping them from the forward (gradient checkpointing): only the blocks' inputs stay live,
	// at the cost of a second forward of each block. Models without blocks ignore it.
	RecomputeBlocks bool
}

// CheckBase returns an error when opts asks a for a 16-bit base it cannot hold; it turns BaseAuto
// into BaseF32 for such a model (auto means "what the checkpoint and the model allow").
func (a *Arch) CheckBase(opts *LoadOptions) error {
	if a.HalfBase || opts.BaseDType == "" || opts.BaseDType == hf.BaseF32 {
		return nil
	}
	if opts.BaseDType == hf.BaseAuto {
		opts.BaseDType = hf.BaseF32
		return nil
	}
	var half []string
	for _, o := range Registered() {
		if o.HalfBase {
			half = append(half, o.Name)
		}
	}
	return fmt.Errorf("%s holds its base in float32 only: --base-dtype %s is not supported (16-bit bases: %s)", a, opts.BaseDType, strings.Join(half, ", "))
}

// EncoderOptions are the settings of Arch.Encoder.
type EncoderOptions struct {
	LoadOptions
	// MaxLength is the number of tokens per text to read (≤ 0: the model's default); a model
	// lowers it to what its positions allow.
	MaxLength int
}

// Encoder is a model loaded for Classify: a classify.Encoder (which also tokenises) plus the
// scale of its features.
type Encoder interface {
	classify.Encoder
	// FeatureScale is the factor the features are multiplied by before the classification head
	// (classify.Task.FeatureScale): 1, or √EmbedDim for unit-norm sentence embeddings, whose
	// entries are ~1/√EmbedDim.
	FeatureScale() float64
}

// CausalModel is a model loaded for CausalLM.
type CausalModel interface {
	// Linears lists the adaptable linear layers (the LM head is not one, as in PEFT's all-linear).
	Linears() []peft.LinearSpec
	// VocabSize is the number of logits per position.
	VocabSize() int
	// MaxPositions is the longest sequence (prompt + completion) the model reads, and the
	// config.json key it comes from, for messages.
	MaxPositions() (n int, key string)
	// EOS is config.json's end-of-sequence token id (-1: none), where generation stops.
	EOS() int
	// Loss is the completion loss over the inputs ids, targets, loss mask [B, L] (lm.CausalBatch)
	// and an optional attention mask [B, L], with the batch split into streams independent
	// chains (nn.CausalLoss): Σ nll·mask / max(Σ mask, 1).
	Loss(inj *peft.Injection, streams int) train.LossFn
	// NewGenerator compiles generation of sequences of up to maxLen tokens (prompt included)
	// with the store's weights as they are now and inj (nil: no adapter).
	NewGenerator(backend compute.Backend, store *model.Store, inj *peft.Injection, maxLen int) (Generator, error)
}

// Generator continues a prompt (token ids) with up to maxNew tokens, stopping after stop (if
// ≥ 0), and returns the new tokens.
type Generator interface {
	Generate(prompt []int, maxNew int, opts lm.SampleOptions, stop int) ([]int, error)
}

// Tasks returns the tasks a supports, Classify first.
func (a *Arch) Tasks() []Task {
	var out []Task
	if a.Encoder != nil {
		out = append(out, Classify)
	}
	if a.CausalLM != nil {
		out = append(out, CausalLM)
	}
	return out
}

// Supports reports whether a has a head for task t.
func (a *Arch) Supports(t Task) bool { return slices.Contains(a.Tasks(), t) }

// String is "llama (models/llama)".
func (a *Arch) String() string { return a.Name + " (" + a.Package + ")" }

// TaskIn returns the task to train the model in dir for when want is asked: for want "" the
// folder's default (DefaultTask), else TaskFor(want).
func (a *Arch) TaskIn(dir string, want Task) (Task, error) {
	if want == "" {
		if a.DefaultTask != nil {
			return a.DefaultTask(a.dir(dir)), nil
		}
		return a.Tasks()[0], nil
	}
	return a.TaskFor(want)
}

// TaskFor returns the task to train a for when want is asked: want itself if a supports it;
// CausalLM for a model that only has a causal-LM head when want is Classify (configs written
// before the task default was the folder's kept "classify" for GPT-2 folders); otherwise an
// error naming the tasks a supports.
func (a *Arch) TaskFor(want Task) (Task, error) {
	switch {
	case a.Supports(want):
		return want, nil
	case want == Classify && a.Supports(CausalLM):
		return CausalLM, nil
	case want != Classify && want != CausalLM:
		return "", fmt.Errorf("task %q: want %s or %s", want, Classify, CausalLM)
	}
	return "", fmt.Errorf("%s has no %s head: it supports %s", a, want, joinTasks(a.Tasks()))
}

// LoadEncoder loads the model in dir for Classify (see Arch.Encoder), or says which tasks a
// supports instead.
func (a *Arch) LoadEncoder(dir string, store *model.Store, opts EncoderOptions) (Encoder, error) {
	if a.Encoder == nil {
		return nil, fmt.Errorf("%s: %s has no %s head: it supports %s", dir, a, Classify, joinTasks(a.Tasks()))
	}
	if err := a.CheckBase(&opts.LoadOptions); err != nil {
		return nil, err
	}
	return a.Encoder(a.dir(dir), store, opts)
}

// LoadCausalLM loads the model in dir for CausalLM (see Arch.CausalLM), or says which tasks a
// supports instead.
func (a *Arch) LoadCausalLM(dir string, store *model.Store, opts LoadOptions) (CausalModel, error) {
	if a.CausalLM == nil {
		return nil, fmt.Errorf("%s: %s is not a causal LM: it supports %s (causal LMs: %s)", dir, a, joinTasks(a.Tasks()), strings.Join(ModelTypes(CausalLM), ", "))
	}
	if err := a.CheckBase(&opts); err != nil {
		return nil, err
	}
	return a.CausalLM(a.dir(dir), store, opts)
}

// LoadTokenizer reads the tokenizer.json of the model folder dir, for a model whose Tokenizer
// is TokenizerJSON.
func (a *Arch) LoadTokenizer(dir string) (*hftok.Tokenizer, error) {
	if a.Tokenizer != TokenizerJSON {
		return nil, fmt.Errorf("%s tokenises with %s, not a %s", a, a.Tokenizer, TokenizerJSON)
	}
	return hftok.Load(dir)
}

// BaseModelName is what an adapter of the model given as name (a built-in name or a folder)
// records as its base model.
func (a *Arch) BaseModelName(name string) string {
	if a.Builtin {
		return a.BaseModel
	}
	return name
}

// dir is the folder a loader gets: "" for a built-in model.
func (a *Arch) dir(dir string) string {
	if a.Builtin {
		return ""
	}
	return dir
}

func joinTasks(ts []Task) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, " and ")
}

var registry struct {
	sync.RWMutex
	archs  []*Arch
	byName map[string]*Arch // built-in names and model types
	byArch map[string]*Arch // "architectures" values
}

// Register adds a to the registry; model packages call it from init. Like database/sql.Register
// it panics on a programming error found at start-up: an empty Name or Package, no task, no
// model type for a folder model, no tokenizer, or a name, model type or architecture that is
// already registered.
func Register(a Arch) {
	if err := register(&a); err != nil {
		panic("models.Register: " + err.Error())
	}
}

func register(a *Arch) error {
	switch {
	case a.Name == "" || a.Package == "":
		return fmt.Errorf("architecture %q (package %q) needs a Name and a Package", a.Name, a.Package)
	case len(a.Tasks()) == 0:
		return fmt.Errorf("%s has neither an Encoder nor a CausalLM loader", a)
	case !a.Builtin && len(a.ModelTypes) == 0:
		return fmt.Errorf("%s lists no model_type (a built-in model sets Builtin)", a)
	case a.Builtin && len(a.ModelTypes)+len(a.Architectures) > 0:
		return fmt.Errorf("%s is built in: it has no model_type or architectures", a)
	case a.Builtin && a.BaseModel == "":
		return fmt.Errorf("%s is built in and needs a BaseModel name for its adapters", a)
	case a.Tokenizer == "":
		return fmt.Errorf("%s does not say what it tokenises with", a)
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName, registry.byArch = map[string]*Arch{}, map[string]*Arch{}
	}
	names := a.ModelTypes
	if a.Builtin {
		names = []string{a.Name}
	}
	for _, n := range names {
		if prev, ok := registry.byName[n]; ok {
			return fmt.Errorf("%s: model type %q is already registered by %s", a, n, prev)
		}
	}
	for _, n := range a.Architectures {
		if prev, ok := registry.byArch[n]; ok {
			return fmt.Errorf("%s: architecture %q is already registered by %s", a, n, prev)
		}
	}
	for _, prev := range registry.archs {
		if prev.Name == a.Name {
			return fmt.Errorf("%s: the name %q is already registered by %s", a, a.Name, prev)
		}
	}
	for _, n := range names {
		registry.byName[n] = a
	}
	for _, n := range a.Architectures {
		registry.byArch[n] = a
	}
	registry.archs = append(registry.archs, a)
	return nil
}

// Registered returns the registered architectures, sorted by Name.
func Registered() []*Arch {
	registry.RLock()
	defer registry.RUnlock()
	out := slices.Clone(registry.archs)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ModelTypes returns the registered model types of the architectures that support each of
// tasks (all of them when none is given), sorted; a built-in model counts by its name.
func ModelTypes(tasks ...Task) []string {
	var out []string
	for _, a := range Registered() {
		ok := len(tasks) == 0
		for _, t := range tasks {
			ok = ok || a.Supports(t)
		}
		if !ok {
			continue
		}
		if a.Builtin {
			out = append(out, a.Name)
		}
		out = append(out, a.ModelTypes...)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the architecture registered for a model type or a built-in model's name; an
// unknown one is an error listing the known ones.
func Lookup(modelType string) (*Arch, error) {
	registry.RLock()
	a := registry.byName[modelType]
	registry.RUnlock()
	if a == nil {
		return nil, fmt.Errorf("model_type %q is not a model singlora knows (known: %s)", modelType, strings.Join(ModelTypes(), ", "))
	}
	return a, nil
}

// Resolve returns the architecture of a --model value: a built-in model's name, or a Hugging
// Face folder, by its config.json's "model_type" (or, without one, its "architectures"). The
// error for an unknown model type lists the known ones.
func Resolve(name string) (*Arch, error) {
	registry.RLock()
	a := registry.byName[name]
	registry.RUnlock()
	if a != nil && a.Builtin {
		return a, nil
	}
	if st, err := os.Stat(name); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("model %q is neither a model folder (config.json, model.safetensors, tokenizer.json) nor a built-in model (%s)", name, strings.Join(builtins(), ", "))
	}
	rc, err := hf.ReadConfig(name)
	if err != nil {
		return nil, err
	}
	mt, err := rc.String("model_type", "")
	if err != nil {
		return nil, err
	}
	if mt != "" {
		a, err := Lookup(mt)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", configPath(name), err)
		}
		return a, nil
	}
	var archs []string
	if _, err := rc.Decode("architectures", &archs); err != nil {
		return nil, err
	}
	if len(archs) == 0 {
		return nil, fmt.Errorf("%s: neither \"model_type\" nor \"architectures\" is set: cannot tell the model (known model types: %s)", configPath(name), strings.Join(ModelTypes(), ", "))
	}
	registry.RLock()
	a = registry.byArch[archs[0]]
	registry.RUnlock()
	if a == nil {
		return nil, fmt.Errorf("%s: architecture %q is not one singlora knows (known: %s)", configPath(name), archs[0], strings.Join(knownArchitectures(), ", "))
	}
	return a, nil
}

// IsBuiltin reports whether name is a built-in model's name (not a folder path).
func IsBuiltin(name string) bool {
	a, err := Lookup(name)
	return err == nil && a.Builtin
}

func builtins() []string {
	var out []string
	for _, a := range Registered() {
		if a.Builtin {
			out = append(out, a.Name)
		}
	}
	return out
}

func knownArchitectures() []string {
	var out []string
	for _, a := range Registered() {
		out = append(out, a.Architectures...)
	}
	sort.Strings(out)
	return out
}

func configPath(dir string) string { return filepath.Join(dir, hf.ConfigFile) }
