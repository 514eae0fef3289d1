// Package bench is singlora's benchmark suite: fixed training workloads (one adapted layer, a
// BERT-base-shaped 4-layer encoder, a small Llama-shaped decoder, the USE-Lite demo step) timed
// step by step on the configured backend, with the same workloads written for PyTorch in
// torch_bench.py so that the two can be compared on one machine. "singlora bench" drives it.
//
// A workload is named "<preset>/<variant>" ("bert-base-4l/singlora", "layer/4096x4096r8/lora");
// each run reports the median step time over Steps timed steps after Warmup untimed ones (the
// first of which compiles the graph), the nominal matmul GFLOP/s and the process's peak RSS.
package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/singlora/singlora/backend"
)

// Result is one workload's measurement; it is printed as one JSON line.
type Result struct {
	Workload string `json:"workload"`
	Method   string `json:"method"`
	Impl     string `json:"impl"` // "go" or "torch"
	// MsMedian is the median step time in milliseconds; MsMin and MsMax bound the timed steps.
	MsMedian float64 `json:"ms_per_step_median"`
	MsMin    float64 `json:"ms_per_step_min"`
	MsMax    float64 `json:"ms_per_step_max"`
	// CPUMsPerStep is the process's CPU time (user+system, all threads) per timed step: less
	// sensitive than wall time to other processes on a shared machine, though not immune.
	CPUMsPerStep float64 `json:"cpu_ms_per_step"`
	Steps        int     `json:"steps"`
	Warmup       int     `json:"warmup"`
	// GFLOPs is the achieved rate of the workload's nominal matmul work (GFLOPPerStep / median).
	GFLOPs       float64 `json:"gflops"`
	GFLOPPerStep float64 `json:"gflop_per_step"`
	// PeakRSSMB is the process's peak resident set (VmHWM) after the run. It covers one workload
	// only when the workload ran in its own process (the default of "singlora bench").
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// SetupSec is the time to build the model and run the warm-up steps (including compilation).
	SetupSec float64 `json:"setup_s"`
	Shape    string  `json:"shape,omitempty"`
	// TokensPerS is the tokens (batch × sequence) one step trains on over the median step time,
	// for the workloads that know their token count (llama-1b, llama-7b, model).
	TokensPerS float64 `json:"tokens_per_s,omitempty"`
	// BaseDType is the dtype the frozen base matrices were held in (bf16, f16, f32) where the
	// workload loads a checkpoint; LoadSec the seconds its loader took to read it into the store
	// (part of SetupSec).
	BaseDType string  `json:"base_dtype,omitempty"`
	LoadSec   float64 `json:"load_s,omitempty"`
	// Skipped, when set, says why the workload did not run (the other fields are then empty).
	Skipped string `json:"skipped,omitempty"`
	Machine
}

// Machine describes where a result was measured.
type Machine struct {
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	Runtime string `json:"runtime"` // Go version, or torch version for PyTorch results
	Backend string `json:"backend"` // backend configuration (or torch thread settings)
	Load1   string `json:"loadavg_1m"`
}

// ThisMachine describes the current machine and Go runtime.
func ThisMachine() Machine {
	return Machine{CPU: CPUModel(), Cores: runtime.NumCPU(), Runtime: runtime.Version() + " GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0)),
		Backend: backend.Config(), Load1: LoadAvg()}
}

// CPUModel returns the "model name" of /proc/cpuinfo ("unknown" elsewhere).
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// LoadAvg returns the 1-minute load average ("" where unknown): the machine may be shared.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// PeakRSSMB returns the process's peak resident set size in MiB (VmHWM; 0 where unknown).
func PeakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// Workload is one benchmark: Setup builds it and returns the function that runs one step.
type Workload struct {
	Name   string // "<preset>/<variant>"
	Method string
	Shape  string
	// GFLOP is the nominal matmul work of one step (forward, input gradients, and the weight
	// gradients of trainable weights), in GFLOP.
	GFLOP float64
	Setup func() (step func() error, err error)
	// Describe, if set, gives the shape and nominal GFLOP once Setup has run (when they depend
	// on the data).
	Describe func() (shape string, gflop float64)
	// Prepare, if set, runs before Setup and outside every timing (writing a checkpoint the
	// workload then loads).
	Prepare func() error
	// Annotate, if set, fills the fields only the workload knows once it has run (TokensPerS,
	// BaseDType, LoadSec).
	Annotate func(r *Result)
	// Warmup and Steps, where not 0, are the workload's default numbers of untimed and timed
	// steps (the bench command's --warmup and --steps override them).
	Warmup, Steps int
	// Log, if set, receives progress (each step's time) as the run goes.
	Log func(format string, args ...any)
}

// ErrSkip marks a workload that cannot run here (e.g. data not fetched); the message says why.
type ErrSkip struct{ Reason string }

func (e ErrSkip) Error() string { return "skipped: " + e.Reason }

// Run builds w, runs warmup untimed steps and steps timed ones. With cpuProfile != "" the timed
// steps are CPU-profiled (pprof) into that file.
func Run(w Workload, steps, warmup int, cpuProfile string) (Result, error) {
	if steps < 1 {
		return Result{}, fmt.Errorf("steps must be ≥ 1")
	}
	logf := w.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if w.Prepare != nil {
		if err := w.Prepare(); err != nil {
			return Result{}, err
		}
	}
	start := time.Now()
	step, err := w.Setup()
	if err != nil {
		return Result{}, err
	}
	for i := 0; i < warmup; i++ {
		t0 := time.Now()
		if err := step(); err != nil {
			return Result{}, fmt.Errorf("%s warm-up step %d: %w", w.Name, i+1, err)
		}
		logf("%s: warm-up step %d/%d: %.1f s", w.Name, i+1, warmup, time.Since(t0).Seconds())
	}
	setup := time.Since(start).Seconds()
	if w.Describe != nil {
		w.Shape, w.GFLOP = w.Describe()
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return Result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	ms := make([]float64, steps)
	cpu0 := cpuSeconds()
	for i := range ms {
		t0 := time.Now()
		if err := step(); err != nil {
			return Result{}, fmt.Errorf("%s step %d: %w", w.Name, i+1, err)
		}
		ms[i] = float64(time.Since(t0).Nanoseconds()) / 1e6
		logf("%s: step %d/%d: %.1f s", w.Name, i+1, steps, ms[i]/1e3)
	}
	r := Result{Workload: w.Name, Method: w.Method, Impl: "go", Steps: steps, Warmup: warmup, GFLOPPerStep: w.GFLOP,
		SetupSec: setup, Shape: w.Shape, Machine: ThisMachine()}
	r.CPUMsPerStep = (cpuSeconds() - cpu0) * 1e3 / float64(steps)
	r.MsMedian, r.MsMin, r.MsMax = Median(ms), slicesMin(ms), slicesMax(ms)
	if r.MsMedian > 0 {
		r.GFLOPs = w.GFLOP / (r.MsMedian / 1e3)
	}
	if w.Annotate != nil {
		w.Annotate(&r)
	}
	r.PeakRSSMB = PeakRSSMB()
	return r, nil
}

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func slicesMin(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func slicesMax(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// JSON returns r as one line of JSON.
func (r Result) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// ParseResult reads one JSON line written by Result.JSON or torch_bench.py.
func ParseResult(line string) (Result, error) {
	var r Result
	err := json.Unmarshal([]byte(line), &r)
	return r, err
}
