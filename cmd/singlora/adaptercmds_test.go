package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// fixture writes a base checkpoint with one in>out layer "blk.proj" (F16 weight [3, 5]) and an
// unrelated tensor, and a SingLoRA adapter (r=2, α=4, T=10, 5 steps → u=0.5) for it.
func fixture(t *testing.T) (dir, base, adapter string, w0, A []float32) {
	t.Helper()
	dir = t.TempDir()
	w0 = []float32{0.5, -1, 0.25, 2, -0.75, 1.5, 0.125, -2, 1, 0, -0.5, 0.75, 1.25, -1.5, 0.375}
	wt, err := safetensors.FromFloat32s("blk.proj.weight", safetensors.F16, []int{3, 5}, w0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := safetensors.FromFloat32s("blk.norm.weight", safetensors.F32, []int{5}, []float32{1, 2, 3, 4, 5})
	base = filepath.Join(dir, "base.safetensors")
	if err := safetensors.Write(base, []safetensors.Tensor{other, wt}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	A = []float32{0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0} // [5, 2]
	a := &adapterio.Adapter{
		Config: &adapterio.Config{PeftType: adapterio.TypeSingLoRA, R: 2, LoraAlpha: 4, TargetModules: []string{"proj"},
			RampUpSteps: 10, TrainedSteps: 5, Init: "theory"},
		Modules: []*adapterio.Module{{Path: "blk.proj", In: 5, Out: 3, Tensors: map[string]*adapterio.Matrix{
			peft.NameSingLoRAA: {Shape: []int{5, 2}, Data: A}}}},
	}
	adapter = filepath.Join(dir, "adapter")
	if err := adapterio.Save(adapter, a); err != nil {
		t.Fatal(err)
	}
	return
}

func TestMergeCommand(t *testing.T) {
	dir, base, adapter, w0, A := fixture(t)
	out := filepath.Join(dir, "merged.safetensors")
	var buf bytes.Buffer
	if err := runMerge([]string{"--base", base, "--adapter", adapter, "--out", out}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "merged 1 weights") {
		t.Errorf("output %q", buf.String())
	}
	f, err := safetensors.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	w := f.Get("blk.proj.weight")
	if w == nil || w.DType != safetensors.F16 {
		t.Fatalf("merged weight missing or not F16: %v", w)
	}
	got, _ := w.Float32s()
	s, u := 4.0/2, 0.5
	for o := range 3 {
		for i := range 5 {
			d := s * u * (float64(A[o*2])*float64(A[i*2]) + float64(A[o*2+1])*float64(A[i*2+1]))
			want := safetensors.F16ToFloat32(safetensors.Float32ToF16(float32(float64(w0[o*5+i]) + d)))
			if got[o*5+i] != want {
				t.Errorf("W[%d,%d] = %v, want %v", o, i, got[o*5+i], want)
			}
		}
	}
	if n, _ := f.Get("blk.norm.weight").Float32s(); n[4] != 5 || f.Metadata["format"] != "pt" {
		t.Error("other tensor or metadata not copied")
	}
	back := filepath.Join(dir, "back.safetensors")
	if err := runMerge([]string{"--base", out, "--adapter", adapter, "--out", back, "--unmerge"}, &buf); err != nil {
		t.Fatal(err)
	}
	bf, _ := safetensors.Read(back)
	bw, _ := bf.Get("blk.proj.weight").Float32s()
	for i := range w0 {
		if math.Abs(float64(bw[i]-w0[i])) > 2e-3*(1+math.Abs(float64(w0[i]))) {
			t.Errorf("unmerged[%d] = %v, want %v", i, bw[i], w0[i])
		}
	}
	// Errors: missing flags; a base without the module → nothing written.
	if err := runMerge([]string{"--base", base}, &buf); err == nil {
		t.Error("missing flags accepted")
	}
	other := filepath.Join(dir, "other.safetensors")
	x, _ := safetensors.FromFloat32s("x.weight", safetensors.F32, []int{1}, []float32{1})
	_ = safetensors.Write(other, []safetensors.Tensor{x}, nil)
	bad := filepath.Join(dir, "bad.safetensors")
	err = runMerge([]string{"--base", other, "--adapter", adapter, "--out", bad}, &buf)
	if err == nil || !strings.Contains(err.Error(), "blk.proj.weight") {
		t.Errorf("error %v", err)
	}
	if _, serr := os.Stat(bad); serr == nil {
		t.Error("output written on error")
	}
}

func TestExportCommand(t *testing.T) {
	dir, _, adapter, _, A := fixture(t)
	out := filepath.Join(dir, "lora")
	var buf bytes.Buffer
	if err := runExport([]string{"--format", "lora", "--adapter", adapter, "--out", out}, &buf); err != nil {
		t.Fatal(err)
	}
	cb, _ := os.ReadFile(filepath.Join(out, adapterio.ConfigFile))
	var cfg map[string]any
	if err := json.Unmarshal(cb, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["peft_type"] != "LORA" || cfg["lora_alpha"] != 2.0 || cfg["r"] != 2.0 || cfg["use_rslora"] != false {
		t.Errorf("config %s", cb)
	}
	f, err := safetensors.Read(filepath.Join(out, adapterio.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	la, _ := f.Get("base_model.model.blk.proj.lora_A.weight").Float32s() // [2, 5]
	lb, _ := f.Get("base_model.model.blk.proj.lora_B.weight").Float32s() // [3, 2]
	for o := range 3 {
		for i := range 5 {
			ba := float64(lb[o*2])*float64(la[i]) + float64(lb[o*2+1])*float64(la[5+i])
			d := 2 * 0.5 * (float64(A[o*2])*float64(A[i*2]) + float64(A[o*2+1])*float64(A[i*2+1]))
			if math.Abs(ba-d) > 1e-6 {
				t.Errorf("B·A[%d,%d] = %v, ΔW = %v", o, i, ba, d)
			}
		}
	}
	if err := runExport([]string{"--format", "gguf", "--adapter", adapter, "--out", out + "2"}, &buf); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestInspectCommand(t *testing.T) {
	_, base, adapter, _, _ := fixture(t)
	var buf bytes.Buffer
	if err := runInspect([]string{adapter}, &buf); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{"method:       singlora", "rank:         2", "scaling:      2 (alpha/r)", "ramp T = 10, u = 0.5",
		"trained steps: 5", "blk.proj", "adapter params: 10 in 1 modules", "base_model.model.blk.proj.singlora_A.weight", "F32", "[5, 2]"} {
		if !strings.Contains(s, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, s)
		}
	}
	buf.Reset()
	if err := runInspect([]string{base}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "2 tensors, 20 params") || !strings.Contains(buf.String(), "F16") {
		t.Errorf("inspect file output:\n%s", buf.String())
	}
	if err := runInspect([]string{filepath.Join(adapter, "nope")}, &buf); err == nil {
		t.Error("missing path accepted")
	}
}
