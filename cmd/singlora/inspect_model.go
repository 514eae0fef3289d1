package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/models"
	_ "github.com/singlora/singlora/models/all" // the model packages register themselves
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/peft"
)

// isModel reports whether inspect's argument p is a model: a built-in model's name, or a folder
// with a config.json and no adapter_config.json.
func isModel(p string) bool {
	if models.IsBuiltin(p) {
		if _, err := os.Stat(p); err != nil { // a file or folder of that name wins
			return true
		}
	}
	_, errConfig := os.Stat(filepath.Join(p, hf.ConfigFile))
	_, errAdapter := os.Stat(filepath.Join(p, adapterio.ConfigFile))
	return errConfig == nil && errAdapter != nil
}

// linearInfo is one linear layer of a model (what --targets matches).
type linearInfo struct {
	Path    string `json:"path"`
	In      int    `json:"in"`
	Out     int    `json:"out"`
	Bias    bool   `json:"bias"`
	Weights int    `json:"weights"`
}

// modelInfo describes a model: the architecture that loads it, its tasks and tokenizer, and the
// linear layers an adapter can target.
type modelInfo struct {
	Kind         string   `json:"kind"` // "model"
	Path         string   `json:"path"`
	Architecture string   `json:"architecture"`
	Package      string   `json:"package"` // the Go package that implements it
	ModelTypes   []string `json:"model_types,omitempty"`
	Tasks        []string `json:"tasks"`
	Tokenizer    string   `json:"tokenizer"`
	// Causal LMs: the vocabulary, the position limit (and its config.json key) and eos.
	VocabSize    int    `json:"vocab_size,omitempty"`
	MaxPositions int    `json:"max_positions,omitempty"`
	PositionsKey string `json:"max_positions_key,omitempty"`
	EOS          *int   `json:"eos_token_id,omitempty"`
	// Encoders: the sentence features.
	EmbedDim      int          `json:"embed_dim,omitempty"`
	Linears       []linearInfo `json:"linear_layers"`
	LinearWeights int          `json:"linear_weights"`
	Params        int          `json:"params"`
}

// describeModel describes the model p through the models registry, loading the checkpoint as
// train does.
func describeModel(p string) (*modelInfo, error) {
	arch, err := models.Resolve(p)
	if err != nil {
		return nil, err
	}
	d := &modelInfo{Kind: "model", Path: p, Architecture: arch.Name, Package: arch.Package, ModelTypes: arch.ModelTypes, Tokenizer: arch.Tokenizer,
		Tasks: []string{}, Linears: []linearInfo{}}
	store := model.NewStore()
	var specs []peft.LinearSpec
	if arch.Supports(models.CausalLM) {
		cm, err := arch.LoadCausalLM(p, store, models.LoadOptions{})
		if err != nil {
			return nil, err
		}
		eos := cm.EOS()
		d.VocabSize, d.EOS = cm.VocabSize(), &eos
		d.MaxPositions, d.PositionsKey = cm.MaxPositions()
		specs = cm.Linears()
	} else {
		enc, err := arch.LoadEncoder(p, store, models.EncoderOptions{})
		if err != nil {
			return nil, err
		}
		specs, d.EmbedDim = enc.Linears(), enc.EmbedDim()
	}
	for v := range store.IterVariables() {
		d.Params += v.Shape().Size()
	}
	for _, t := range arch.Tasks() {
		d.Tasks = append(d.Tasks, string(t))
	}
	for _, s := range specs {
		d.Linears = append(d.Linears, linearInfo{s.Path, s.In, s.Out, s.Bias, s.In * s.Out})
		d.LinearWeights += s.In * s.Out
	}
	return d, nil
}

func (d *modelInfo) text(w io.Writer) {
	fmt.Fprintf(w, "model:        %s\n", d.Path)
	fmt.Fprintf(w, "architecture: %s (%s)", d.Architecture, d.Package)
	if len(d.ModelTypes) > 0 {
		fmt.Fprintf(w, ", model_type %s", strings.Join(d.ModelTypes, " | "))
	}
	fmt.Fprintf(w, "\ntasks:        %s\ntokenizer:    %s\n", strings.Join(d.Tasks, ", "), d.Tokenizer)
	if d.EOS != nil {
		fmt.Fprintf(w, "shape:        vocabulary %d tokens, at most %d positions (%s), eos %d\n", d.VocabSize, d.MaxPositions, d.PositionsKey, *d.EOS)
	} else {
		fmt.Fprintf(w, "shape:        %d sentence features\n", d.EmbedDim)
	}
	fmt.Fprintf(w, "\n%-50s %7s %7s %5s %10s\n", "linear layer (--targets)", "in", "out", "bias", "weights")
	for _, l := range d.Linears {
		fmt.Fprintf(w, "%-50s %7d %7d %5t %10d\n", l.Path, l.In, l.Out, l.Bias, l.Weights)
	}
	fmt.Fprintf(w, "%d linear layers with %d weights, of %d parameters loaded\n", len(d.Linears), d.LinearWeights, d.Params)
}
