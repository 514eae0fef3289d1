//go:build xla

package backend

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestXLAPluginErrors: the XLA backend without a usable plugin fails at once with an error that
// names PJRT_PLUGIN_LIBRARY_PATH and the path form — never a hang, never the go backend. The
// fake plugins are shared objects built with the C compiler cgo uses: one without GetPjrtApi,
// one whose GetPjrtApi returns NULL (go-xla v0.4.13 panics on both; New turns that into an
// error).
func TestXLAPluginErrors(t *testing.T) {
	t.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	empty := t.TempDir()
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", empty)
	type tc struct{ config, want string }
	cases := []tc{{"xla:cuda", `PJRT_PLUGIN_LIBRARY_PATH="` + empty + `"`}}
	if cc, err := exec.LookPath("cc"); err == nil {
		dir := t.TempDir()
		for name, src := range map[string]string{
			"pjrt_c_api_nosym_plugin.so":   "int not_pjrt(void) { return 1; }\n",
			"pjrt_c_api_nullapi_plugin.so": "void *GetPjrtApi(void) { return 0; }\n",
		} {
			c := filepath.Join(dir, name+".c")
			if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, name), c).CombinedOutput(); err != nil {
				t.Fatalf("cc %s: %v\n%s", name, err, out)
			}
		}
		cases = append(cases,
			tc{"xla:" + filepath.Join(dir, "pjrt_c_api_nosym_plugin.so"), "GetPjrtApi"},
			tc{"xla:" + filepath.Join(dir, "pjrt_c_api_nullapi_plugin.so"), "not a PJRT plugin"},
		)
	} else {
		t.Log("no C compiler: the fake-plugin cases are skipped")
	}
	for _, c := range cases {
		start := time.Now()
		b, err := New(c.config)
		if err == nil {
			b.Finalize()
			t.Errorf("New(%q) succeeded, want an error", c.config)
			continue
		}
		msg := err.Error()
		for _, want := range []string{c.want, "PJRT_PLUGIN_LIBRARY_PATH", "xla:/absolute/path/to/plugin.so", "no fallback to the go backend"} {
			if !strings.Contains(msg, want) {
				t.Errorf("New(%q) error does not say %q:\n%s", c.config, want, msg)
			}
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("New(%q) took %v to fail", c.config, d)
		}
	}
}

// smokeConfig is the XLA configuration TestXLASmoke runs on (SINGLORA_XLA_SMOKE, e.g.
// "xla:cuda,tf32=false" or "xla:/path/plugin.so,tf32=false"); unset, the test is skipped.
func smokeConfig(t *testing.T) string {
	c := os.Getenv("SINGLORA_XLA_SMOKE")
	if c == "" {
		t.Skip("set SINGLORA_XLA_SMOKE to an XLA backend configuration (scripts/gpu/check.sh does)")
	}
	return c
}

// TestXLASmoke runs on a real PJRT plugin: a float32 matmul checked against a float64 host
// product, the While-loop graph of TestWhileLoopWithMatmulsNeverHangs, and 6 SGD steps of the
// tiny GPT compared with the go backend (same seed and data; tolerance 1e-3 relative, as
// reductions on a GPU run in another order; with tf32 on it is looser, so the script sets
// tf32=false).
func TestXLASmoke(t *testing.T) {
	config := smokeConfig(t)
	b := newTestBackend(t, config)
	t.Logf("backend %q: %s — %s", config, b.Name(), b.Description())

	const m, k, n = 192, 320, 96
	rng := rand.New(rand.NewPCG(1, 2))
	a, c := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	e, err := NewExec(b, func(x, y *Node) *Node { return MatMul(x, y) })
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Call(tensors.FromFlatDataAndDimensions(a, m, k), tensors.FromFlatDataAndDimensions(c, k, n))
	if err != nil {
		t.Fatal(err)
	}
	got := tensors.MustCopyFlatData[float32](out[0])
	worst := 0.0
	for i := range m {
		for j := range n {
			var want float64
			for l := range k {
				want += float64(a[i*k+l]) * float64(c[l*n+j])
			}
			worst = max(worst, math.Abs(float64(got[i*n+j])-want)/math.Sqrt(float64(k)))
		}
	}
	t.Logf("matmul %dx%dx%d: max |error|/√k = %.2e", m, k, n, worst)
	if worst > 1e-4 || math.IsNaN(worst) {
		t.Errorf("matmul on %s: max |error|/√k %.2e, want ≤ 1e-4 (tf32 on? add tf32=false)", config, worst)
	}

	x := make([]float32, 256*256)
	for i := range x {
		x[i] = float32(i%17) / 17
	}
	w, err := NewExec(b, whileMatmulGraph)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Call(tensors.FromFlatDataAndDimensions(x, 256, 256)); err != nil {
		t.Fatalf("While loop with matmuls on %s: %v", config, err)
	}

	goB := newTestBackend(t, DefaultConfig)
	want, goPer, err := runTraining(goB, tinyGPT, 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	losses, per, err := runTraining(b, tinyGPT, 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tiny GPT: %s %v (%v/step), go %v (%v/step)", config, losses, per, want, goPer)
	for i := range want {
		if d := math.Abs(float64(losses[i]-want[i])) / math.Abs(float64(want[i])); !(d <= 1e-3) {
			t.Errorf("step %d: loss %v on %s, %v on go: relative difference %.2e > 1e-3", i, losses[i], config, want[i], d)
		}
	}
	fmt.Printf("XLA_SMOKE {\"config\":%q,\"matmul_err\":%.3g,\"ms_per_step\":%.3f,\"go_ms_per_step\":%.3f}\n",
		config, worst, per.Seconds()*1e3, goPer.Seconds()*1e3)
}
