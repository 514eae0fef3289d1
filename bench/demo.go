package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/singlora/singlora/demo"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
	"github.com/singlora/singlora/peft"
)

// DemoBatch is the demo's batch size.
const DemoBatch = 32

// DemoWorkload is one training step of the demo: USE-Lite (pretrained weights) with adapters on
// its 14 linears and the classification head, on 32 real sentences (a seeded sample of the
// sentiment data) padded as the demo pads them (to a multiple of 16 tokens). It is skipped
// (ErrSkip) when "singlora fetch" has not been run.
func DemoWorkload(method string) (Workload, error) {
	m, err := parseMethod(method)
	if err != nil {
		return Workload{}, err
	}
	w := Workload{Name: "demo/" + string(m), Method: string(m)}
	// Nominal FLOPs at the padded length are filled in by Setup (the length depends on the data).
	w.Setup = func() (func() error, error) {
		if !use.Available() {
			return nil, ErrSkip{Reason: "USE-Lite is not fetched into " + fetch.CacheDir() + " (run \"singlora fetch\")"}
		}
		ex, err := demo.Sentences(fetch.CacheDir())
		if err != nil {
			return nil, ErrSkip{Reason: err.Error()}
		}
		labels := []string{"0", "1"}
		task, inj, err := demo.Setup("", demo.MethodSpec{Name: string(m), Method: m, LR: 1e-3}, 8, labels, 1)
		if err != nil {
			return nil, err
		}
		if err := inj.Attach(task.Store); err != nil {
			return nil, err
		}
		task.Streams = Streams
		rng := rand.New(rand.NewPCG(3, 4))
		perm := rng.Perm(len(ex))[:DemoBatch]
		texts := make([]string, DemoBatch)
		ys := make([]int, DemoBatch)
		for i, j := range perm {
			texts[i] = ex[j].Text
			if ex[j].Label == "1" {
				ys[i] = 1
			}
		}
		d := task.NewData(texts, ys)
		idx := make([]int, DemoBatch)
		for i := range idx {
			idx[i] = i
		}
		inputs, err := d.Batch(idx)
		if err != nil {
			return nil, err
		}
		DemoSeq = inputs[0].Shape().Dim(1)
		return stepper(task.Store, task.Loss, inputs)
	}
	w.Describe = func() (string, float64) { return DemoShape(), demoGFLOP(DemoSeq, m) }
	return w, nil
}

// DemoSeq is the padded length of the demo batch (set by the demo workload's Setup).
var DemoSeq int

// demoGFLOP is the nominal matmul work of a demo step at padded length l.
func demoGFLOP(l int, m peft.Method) float64 {
	n := float64(DemoBatch * l)
	fwd := 0.0
	for _, s := range use.Linears() {
		if s.Path == "pooler" {
			fwd += 2 * DemoBatch * float64(s.In*s.Out)
			continue
		}
		fwd += 2 * n * float64(s.In*s.Out)
	}
	for i := 0; i < use.NumLayers; i++ {
		d := use.EmbedDim
		if i > 0 {
			d = use.HiddenDim
		}
		fwd += 4 * DemoBatch * float64(l*l) * float64(d)
	}
	trainable := 0.0
	if peft.TrainsBase(m) {
		trainable = fwd
	}
	return nominalGFLOP(fwd, trainable)
}

// DemoShape describes the demo batch once Setup has run.
func DemoShape() string {
	return fmt.Sprintf("B=%d L=%d (padded to 16) USE-Lite 2 layers 256/512 ffn 1536 r=8", DemoBatch, DemoSeq)
}
