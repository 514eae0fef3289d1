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

// inspectModel describes the model p through the models registry: the architecture that loads
// it, its tasks and tokenizer, and the linear layers an adapter can target (what --targets
// matches), loading the checkpoint as train does.
func inspectModel(p string, w io.Writer) error {
	arch, err := models.Resolve(p)
	if err != nil {
		return err
	}
	store := model.NewStore()
	var specs []peft.LinearSpec
	var detail string
	if arch.Supports(models.CausalLM) {
		cm, err := arch.LoadCausalLM(p, store)
		if err != nil {
			return err
		}
		n, key := cm.MaxPositions()
		specs, detail = cm.Linears(), fmt.Sprintf("vocabulary %d tokens, at most %d positions (%s), eos %d", cm.VocabSize(), n, key, cm.EOS())
	} else {
		enc, err := arch.LoadEncoder(p, store, models.EncoderOptions{})
		if err != nil {
			return err
		}
		specs, detail = enc.Linears(), fmt.Sprintf("%d sentence features", enc.EmbedDim())
	}
	params := 0
	for v := range store.IterVariables() {
		params += v.Shape().Size()
	}
	tasks := make([]string, 0, 2)
	for _, t := range arch.Tasks() {
		tasks = append(tasks, string(t))
	}
	fmt.Fprintf(w, "model:        %s\n", p)
	fmt.Fprintf(w, "architecture: %s", arch)
	if len(arch.ModelTypes) > 0 {
		fmt.Fprintf(w, ", model_type %s", strings.Join(arch.ModelTypes, " | "))
	}
	fmt.Fprintf(w, "\ntasks:        %s\ntokenizer:    %s\n", strings.Join(tasks, ", "), arch.Tokenizer)
	fmt.Fprintf(w, "shape:        %s\n", detail)
	fmt.Fprintf(w, "\n%-50s %7s %7s %5s %10s\n", "linear layer (--targets)", "in", "out", "bias", "weights")
	linear := 0
	for _, s := range specs {
		fmt.Fprintf(w, "%-50s %7d %7d %5t %10d\n", s.Path, s.In, s.Out, s.Bias, s.In*s.Out)
		linear += s.In * s.Out
	}
	fmt.Fprintf(w, "%d linear layers with %d weights, of %d parameters loaded\n", len(specs), linear, params)
	return nil
}
