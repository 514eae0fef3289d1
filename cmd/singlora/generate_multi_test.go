package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
)

// writeTestAdapter attaches cfg to the model in dir, moves every adapter tensor away from its
// init (so that it changes the outputs) and saves it into out.
func writeTestAdapter(t *testing.T, dir, out string, cfg peft.Config) {
	t.Helper()
	store := model.NewStore()
	c, err := llama.Load(dir, store)
	if err != nil {
		t.Fatal(err)
	}
	inj, err := peft.Inject(cfg, llama.Linears(c))
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	i := 0
	for v := range store.IterVariables() {
		if !peft.IsAdapterVariable(v.Path()) {
			continue
		}
		vals, err := peft.Float32Values(v)
		if err != nil {
			t.Fatal(err)
		}
		for j := range vals {
			i++
			vals[j] += float32(2 * math.Sin(float64(i)*1.3+float64(cfg.Seed)))
		}
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := adapterio.SaveFromStore(out, inj, store, dir); err != nil {
		t.Fatal(err)
	}
}

// TestGenerateSeveralAdapters: generate with two --adapter and --active a,b,none prints, per
// name, exactly what generate prints with that adapter alone (or with none), from one load.
func TestGenerateSeveralAdapters(t *testing.T) {
	dir := tinyLlamaDir(t)
	da, db := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ca := peft.DefaultConfig(peft.SingLoRA)
	ca.Rank, ca.Alpha, ca.Seed = 2, 8, 1
	writeTestAdapter(t, dir, da, ca)
	cb := peft.DefaultConfig(peft.LoRA)
	cb.Targets, cb.Rank, cb.Alpha, cb.Seed = []string{"gate_proj", "up_proj", "down_proj"}, 4, 8, 2
	writeTestAdapter(t, dir, db, cb)
	gen := func(args ...string) string {
		t.Helper()
		out, err := captureStdout(t, func() error {
			return runGenerate(append([]string{"--model", dir, "--prompt-ids", "1,4,7", "--max-new-tokens", "8"}, args...))
		})
		if err != nil {
			t.Fatalf("generate %v: %v", args, err)
		}
		return out
	}
	alone := map[string]string{"a": gen("--adapter", da), "b": gen("--adapter", db), "none": gen()}
	if alone["a"] == alone["none"] && alone["b"] == alone["none"] {
		t.Fatalf("the adapters do not change the greedy tokens (%s): the test would prove nothing", alone["none"])
	}
	lines := strings.Split(gen("--adapter", "a="+da, "--adapter", "b="+db, "--active", "a,b,none,a"), "\n")
	want := []string{"a\t" + alone["a"], "b\t" + alone["b"], "none\t" + alone["none"], "a\t" + alone["a"]}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("several adapters printed\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got := gen("--adapter", "a="+da, "--adapter", "b="+db, "--active", "b"); got != alone["b"] {
		t.Fatalf("--active b printed %q, b alone %q", got, alone["b"])
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--adapter", "a=" + da, "--adapter", "b=" + db}, "choose with --active"},
		{[]string{"--adapter", "a=" + da, "--active", "c"}, "no --adapter of that name (loaded: a; or none, all)"},
		{[]string{"--adapter", "a=" + da, "--adapter", "a=" + db, "--active", "a"}, `two adapters named "a"`},
		{[]string{"--adapter", "none=" + da}, "reserved"},
	} {
		_, err := captureStdout(t, func() error {
			return runGenerate(append([]string{"--model", dir, "--prompt-ids", "1"}, tc.args...))
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
