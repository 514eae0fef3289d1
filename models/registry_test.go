package models_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models"
	_ "github.com/singlora/singlora/models/all"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// folder writes a model folder whose config.json holds fields and returns it.
func folder(t *testing.T, fields map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// known is what models/all registers: every model type and built-in name, with its package and
// tasks. A model package that stops registering (or registers under another name) fails here.
var known = []struct {
	name, pkg string
	tasks     []models.Task
}{
	{"bert", "models/bert", []models.Task{models.Classify}},
	{"roberta", "models/bert", []models.Task{models.Classify}},
	{"llama", "models/llama", []models.Task{models.Classify, models.CausalLM}},
	{"mistral", "models/llama", []models.Task{models.Classify, models.CausalLM}},
	{"qwen2", "models/llama", []models.Task{models.Classify, models.CausalLM}},
	{"gpt2", "models/gpt2", []models.Task{models.CausalLM}},
	{"use", "models/use", []models.Task{models.Classify}},
}

func TestKnownTypesResolve(t *testing.T) {
	for _, k := range known {
		a, err := models.Lookup(k.name)
		if err != nil {
			t.Errorf("%s: %v", k.name, err)
			continue
		}
		if a.Package != k.pkg || !slices.Equal(a.Tasks(), k.tasks) {
			t.Errorf("%s: resolves to %s with tasks %v, want %s with %v", k.name, a, a.Tasks(), k.pkg, k.tasks)
		}
		var got *models.Arch
		if a.Builtin {
			got, err = models.Resolve(k.name) // named on the command line, no folder
		} else {
			got, err = models.Resolve(folder(t, map[string]any{"model_type": k.name}))
		}
		if err != nil || got != a {
			t.Errorf("Resolve(%s) = %v, %v; want %s", k.name, got, err, a)
		}
	}
	// Every registered model type and architecture resolves to its registration through a folder;
	// "architectures" alone is enough.
	for _, a := range models.Registered() {
		for _, mt := range a.ModelTypes {
			if got, err := models.Resolve(folder(t, map[string]any{"model_type": mt, "architectures": a.Architectures})); err != nil || got != a {
				t.Errorf("model_type %q: %v, %v; want %s", mt, got, err, a)
			}
		}
		for _, arch := range a.Architectures {
			if got, err := models.Resolve(folder(t, map[string]any{"architectures": []string{arch}})); err != nil || got != a {
				t.Errorf("architectures [%q]: %v, %v; want %s", arch, got, err, a)
			}
		}
	}
	if got := models.ModelTypes(models.CausalLM); !slices.Equal(got, []string{"gpt2", "llama", "mistral", "qwen2"}) {
		t.Errorf("causal LMs %v", got)
	}
	if !models.IsBuiltin("use") || models.IsBuiltin("llama") || models.IsBuiltin("./use") {
		t.Error("IsBuiltin: only use is built in")
	}
}

func TestUnknownModelTypeListsKnown(t *testing.T) {
	allKnown := func(t *testing.T, err error) {
		t.Helper()
		for _, k := range known {
			if !strings.Contains(err.Error(), k.name) {
				t.Errorf("error %q does not list %s", err, k.name)
			}
		}
	}
	_, err := models.Lookup("mamba")
	if err == nil || !strings.Contains(err.Error(), `model_type "mamba" is not a model singlora knows (known: `) {
		t.Fatalf("Lookup(mamba): %v", err)
	}
	allKnown(t, err)

	dir := folder(t, map[string]any{"model_type": "mamba", "architectures": []string{"MambaForCausalLM"}})
	_, err = models.Resolve(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")+`: model_type "mamba"`) {
		t.Fatalf("Resolve(mamba folder): %v", err)
	}
	allKnown(t, err)

	for _, tc := range []struct {
		name string
		dir  string
		want []string
	}{
		{"unknown architecture", folder(t, map[string]any{"architectures": []string{"MambaForCausalLM"}}),
			[]string{`architecture "MambaForCausalLM" is not one singlora knows`, "LlamaForCausalLM", "GPT2LMHeadModel", "BertModel"}},
		{"neither field", folder(t, map[string]any{"hidden_size": 8}),
			[]string{`neither "model_type" nor "architectures" is set`, "llama", "bert"}},
		{"no config.json", t.TempDir(), []string{"no config.json"}},
		{"no such folder", filepath.Join(t.TempDir(), "nosuch"), []string{"neither a model folder", "built-in model (use)"}},
	} {
		_, err := models.Resolve(tc.dir)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, w)
			}
		}
	}
}

func TestTaskFor(t *testing.T) {
	llama, _ := models.Lookup("llama")
	bert, _ := models.Lookup("bert")
	gpt2, _ := models.Lookup("gpt2")
	for _, tc := range []struct {
		arch      *models.Arch
		want, got models.Task
		err       string
	}{
		{bert, models.Classify, models.Classify, ""},
		{llama, models.CausalLM, models.CausalLM, ""},
		{llama, models.Classify, models.Classify, ""}, // last-token sequence classification
		{gpt2, models.Classify, models.CausalLM, ""},  // no classify head: the causal LM (configs that say classify)
		{bert, models.CausalLM, "", "bert (models/bert) has no causal-lm head: it supports classify"},
		{bert, "regress", "", `task "regress": want classify or causal-lm`},
	} {
		got, err := tc.arch.TaskFor(tc.want)
		if got != tc.got || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s.TaskFor(%s) = %q, %v; want %q, %q", tc.arch.Name, tc.want, got, err, tc.got, tc.err)
		}
	}
	if _, err := bert.LoadCausalLM("dir", model.NewStore(), models.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "is not a causal LM: it supports classify (causal LMs: gpt2, llama, mistral, qwen2)") {
		t.Errorf("bert as a causal LM: %v", err)
	}
	if _, err := gpt2.LoadEncoder("dir", model.NewStore(), models.EncoderOptions{}); err == nil || !strings.Contains(err.Error(), "has no classify head: it supports causal-lm") {
		t.Errorf("gpt2 as an encoder: %v", err)
	}
	use, _ := models.Lookup("use")
	if _, err := use.LoadTokenizer(""); err == nil || !strings.Contains(err.Error(), "not a tokenizer.json") {
		t.Errorf("use's tokenizer.json: %v", err)
	}
}

// toyLM is the causal model of the test-only registration.
type toyLM struct{ dir string }

func (toyLM) Linears() []peft.LinearSpec {
	return []peft.LinearSpec{{Path: "toy.proj", In: 4, Out: 4}}
}
func (toyLM) VocabSize() int                         { return 7 }
func (toyLM) MaxPositions() (int, string)            { return 16, "n_ctx" }
func (toyLM) EOS() int                               { return -1 }
func (toyLM) Loss(*peft.Injection, int) train.LossFn { return nil }
func (toyLM) NewGenerator(compute.Backend, *model.Store, *peft.Injection, int) (models.Generator, error) {
	return nil, nil
}

// TestTestOnlyRegistration: a model registered here (as a new model package would, from its
// init) is resolved from a folder's model_type and architectures, its loader gets the folder,
// and the messages list it.
func TestTestOnlyRegistration(t *testing.T) {
	var loaded string
	models.Register(models.Arch{Name: "toy", Package: "models (test)", ModelTypes: []string{"toy_lm"},
		Architectures: []string{"ToyForCausalLM"}, Tokenizer: models.TokenizerJSON,
		CausalLM: func(dir string, _ *model.Store, _ models.LoadOptions) (models.CausalModel, error) {
			loaded = dir
			return toyLM{dir}, nil
		}})
	dir := folder(t, map[string]any{"model_type": "toy_lm"})
	a, err := models.Resolve(dir)
	if err != nil || a.Name != "toy" {
		t.Fatalf("Resolve: %v, %v", a, err)
	}
	if a2, err := models.Resolve(folder(t, map[string]any{"architectures": []string{"ToyForCausalLM"}})); err != nil || a2 != a {
		t.Fatalf("Resolve by architecture: %v, %v", a2, err)
	}
	cm, err := a.LoadCausalLM(dir, model.NewStore(), models.LoadOptions{})
	if err != nil || loaded != dir || cm.VocabSize() != 7 {
		t.Fatalf("LoadCausalLM: %v, %v (loader got %q)", cm, err, loaded)
	}
	if task, err := a.TaskFor(models.Classify); err != nil || task != models.CausalLM {
		t.Errorf("TaskFor(classify) = %q, %v", task, err)
	}
	if !slices.Contains(models.ModelTypes(models.CausalLM), "toy_lm") || slices.Contains(models.ModelTypes(models.Classify), "toy_lm") {
		t.Errorf("ModelTypes: causal %v, classify %v", models.ModelTypes(models.CausalLM), models.ModelTypes(models.Classify))
	}
	if _, err := models.Lookup("mamba"); err == nil || !strings.Contains(err.Error(), "toy_lm") {
		t.Errorf("the unknown-type message does not list the new model: %v", err)
	}
}

// TestRegisterRefuses: registrations that would make resolution ambiguous or a model unusable
// panic at start-up, naming the conflict.
func TestRegisterRefuses(t *testing.T) {
	loader := func(string, *model.Store, models.LoadOptions) (models.CausalModel, error) { return toyLM{}, nil }
	for _, tc := range []struct {
		name string
		arch models.Arch
		want string
	}{
		{"model type taken", models.Arch{Name: "llama2", Package: "p", ModelTypes: []string{"mistral"}, Tokenizer: "t", CausalLM: loader},
			`model type "mistral" is already registered by llama (models/llama)`},
		{"architecture taken", models.Arch{Name: "x", Package: "p", ModelTypes: []string{"x"}, Architectures: []string{"GPT2Model"}, Tokenizer: "t", CausalLM: loader},
			`architecture "GPT2Model" is already registered by gpt2 (models/gpt2)`},
		{"name taken", models.Arch{Name: "gpt2", Package: "p", ModelTypes: []string{"gpt3"}, Tokenizer: "t", CausalLM: loader},
			`the name "gpt2" is already registered`},
		{"built-in name taken", models.Arch{Name: "bert", Package: "p", Builtin: true, BaseModel: "b", Tokenizer: "t", CausalLM: loader},
			`model type "bert" is already registered by bert (models/bert)`},
		{"no task", models.Arch{Name: "x", Package: "p", ModelTypes: []string{"x"}, Tokenizer: "t"}, "neither an Encoder nor a CausalLM loader"},
		{"no model type", models.Arch{Name: "x", Package: "p", Tokenizer: "t", CausalLM: loader}, "lists no model_type"},
		{"no tokenizer", models.Arch{Name: "x", Package: "p", ModelTypes: []string{"x"}, CausalLM: loader}, "does not say what it tokenises with"},
		{"built-in without base model", models.Arch{Name: "x", Package: "p", Builtin: true, Tokenizer: "t", CausalLM: loader}, "needs a BaseModel"},
		{"no name", models.Arch{Package: "p", ModelTypes: []string{"x"}, Tokenizer: "t", CausalLM: loader}, "needs a Name and a Package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tc.want) {
					t.Errorf("Register panicked with %v, want a message containing %q", r, tc.want)
				}
			}()
			models.Register(tc.arch)
		})
	}
	if _, err := models.Lookup("x"); err == nil {
		t.Error("a refused registration was kept")
	}
}

// TestTaskIn: with no task asked, a folder is trained for what it is: a Llama *ForCausalLM (or a
// GPT-2) folder as a causal LM, a *ForSequenceClassification folder or a BERT as a classifier;
// an explicit task wins.
func TestTaskIn(t *testing.T) {
	folder := func(cfg string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	const llamaShape = `"vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2`
	causal := folder(`{"model_type": "llama", "architectures": ["LlamaForCausalLM"], ` + llamaShape + `}`)
	classifier := folder(`{"model_type": "qwen2", "architectures": ["Qwen2ForSequenceClassification"], ` + llamaShape + `}`)
	bertDir := folder(`{"model_type": "bert"}`)
	gpt2Dir := folder(`{"model_type": "gpt2"}`)
	for _, tc := range []struct {
		dir  string
		want models.Task
		got  models.Task
	}{
		{causal, "", models.CausalLM}, {classifier, "", models.Classify}, {bertDir, "", models.Classify},
		{gpt2Dir, "", models.CausalLM}, {causal, models.Classify, models.Classify}, {classifier, models.CausalLM, models.CausalLM},
	} {
		a, err := models.Resolve(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.TaskIn(tc.dir, tc.want)
		if err != nil || got != tc.got {
			t.Errorf("%s (%s) asked %q: task %q, %v; want %q", a, filepath.Base(tc.dir), tc.want, got, err, tc.got)
		}
	}
}
