// Package backend chooses and configures the GoMLX compute backend that singlora runs on.
//
// The default is GoMLX's pure-Go backend with unlimited worker parallelism
// ("go:parallelism=-1", see DefaultConfig and README.md for why); set SINGLORA_BACKEND (or
// GOMLX_BACKEND, or the CLI's --backend) to choose another one, e.g. "xla:cuda" or
// "xla:/path/to/plugin.so" on a machine with a PJRT plugin, in a binary built with the XLA
// backend ("make build-xla", build tag xla; see XLALinked and docs/GPU.md). The graph code in
// this project is backend-agnostic.
package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // registers the pure-Go backend "go"
)

// DefaultConfig is the backend configuration used when neither SINGLORA_BACKEND nor
// GOMLX_BACKEND is set.
//
// "parallelism=-1" makes the pure-Go backend's worker pool unlimited. With the default bounded
// pool (2×GOMAXPROCS slots), a matmul running inside a pool worker calls Saturate, which waits
// for a free slot while holding its own; compute v0.1.2 deadlocked that way on a tiny-GPT
// training step. compute v0.1.14 only avoids it by leaving one slot free for a single top-level
// execution, and the bounded default was also the slowest configuration measured here. With an
// unlimited pool Saturate never waits for a slot, so that deadlock cannot happen by
// construction. See README.md for the measurements.
const DefaultConfig = "go:parallelism=-1"

// Config returns the backend configuration string in force: SINGLORA_BACKEND, else
// GOMLX_BACKEND, else DefaultConfig.
func Config() string {
	if c := os.Getenv("SINGLORA_BACKEND"); c != "" {
		return c
	}
	if c := os.Getenv("GOMLX_BACKEND"); c != "" {
		return c
	}
	return DefaultConfig
}

var (
	once    sync.Once
	shared  compute.Backend
	initErr error
)

// Get returns the process-wide backend, created on first use from Config().
func Get() (compute.Backend, error) {
	once.Do(func() {
		shared, initErr = New(Config())
	})
	return shared, initErr
}

// New creates a new backend from a configuration string ("go", "go:parallelism=-1",
// "go:ops_sequential", "xla:cuda", ...). Most callers want Get, which shares one backend per
// process.
//
// For the pure-Go backend, a "parallelism=N" option is applied directly to the backend's
// worker pool instead of being passed to the backend's own parser, which prints
// "Go backend: parallelism set to N" on stdout (that would corrupt the output of CLI
// commands that write results to stdout). If the backend's layout is not the expected one
// (a future compute version), the option is passed through unchanged.
//
// The configuration is checked first (Validate): a backend this binary lacks, or a plugin path
// that does not exist, is an error that says what to set, never a fallback to another backend.
// An XLA backend whose plugin cannot be loaded is an error naming PJRT_PLUGIN_LIBRARY_PATH and
// the path form.
func New(config string) (compute.Backend, error) {
	if err := Validate(config); err != nil {
		return nil, err
	}
	name, opts, _ := strings.Cut(config, ":")
	if xlaNames[name] {
		return newXLA(config)
	}
	if name == "go" {
		if rest, par, ok := splitParallelism(opts); ok {
			b, err := compute.NewWithConfig(joinConfig(name, rest))
			if err != nil {
				return nil, fmt.Errorf("creating backend %q: %w", config, err)
			}
			if setParallelism(b, par) {
				return b, nil
			}
			b.Finalize()
			// Fall through: let the backend parse (and print) the option itself.
		}
	}
	b, err := compute.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("creating backend %q: %w", config, err)
	}
	return b, nil
}

// Parallelism reports the worker-pool parallelism of a pure-Go backend (-1: unlimited, 0:
// disabled) and whether it could be read.
func Parallelism(b compute.Backend) (int, bool) {
	pool, ok := workersPool(b)
	if !ok {
		return 0, false
	}
	m := pool.MethodByName("MaxParallelism")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 || m.Type().Out(0).Kind() != reflect.Int {
		return 0, false
	}
	return int(m.Call(nil)[0].Int()), true
}

// splitParallelism removes a single well-formed "parallelism=N" option from a comma-separated
// option list.
func splitParallelism(opts string) (rest string, par int, ok bool) {
	var kept []string
	found := false
	for _, o := range strings.Split(opts, ",") {
		if v, isPar := strings.CutPrefix(o, "parallelism="); isPar && !found {
			n, err := strconv.Atoi(v)
			if err != nil {
				return "", 0, false // let the backend report the error
			}
			par, found = n, true
			continue
		}
		if o != "" {
			kept = append(kept, o)
		}
	}
	return strings.Join(kept, ","), par, found
}

func joinConfig(name, opts string) string {
	if opts == "" {
		return name
	}
	return name + ":" + opts
}

// workersPool returns the backend's exported Workers field (a *workerspool.Pool, whose type
// lives in an internal package and cannot be named here).
func workersPool(b compute.Backend) (reflect.Value, bool) {
	v := reflect.ValueOf(b)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("Workers")
	if !f.IsValid() || !f.CanInterface() || f.Kind() != reflect.Pointer || f.IsNil() {
		return reflect.Value{}, false
	}
	return f, true
}

// setParallelism calls Workers.SetMaxParallelism(par), exactly what the backend's own
// "parallelism=N" option does, without the print. It must run before the backend executes
// anything.
func setParallelism(b compute.Backend, par int) bool {
	pool, ok := workersPool(b)
	if !ok {
		return false
	}
	m := pool.MethodByName("SetMaxParallelism")
	if !m.IsValid() || m.Type().NumIn() != 1 || m.Type().In(0).Kind() != reflect.Int || m.Type().NumOut() != 0 {
		return false
	}
	m.Call([]reflect.Value{reflect.ValueOf(par)})
	got, ok := Parallelism(b)
	return ok && got == par
}

// xlaNames are the names GoMLX's XLA backend registers itself under (go-xla v0.4.13).
var xlaNames = map[string]bool{"xla": true, "stablehlo": true, "hlo": true, "shlo": true}

// Validate checks a backend configuration without creating the backend: its name must be one
// this binary has ("go"; "xla" only in a build with XLALinked), and an XLA configuration must
// name its PJRT plugin — by name ("xla:cuda", searched in PJRT_PLUGIN_LIBRARY_PATH) or by the
// absolute path of a plugin file that exists ("xla:/path/to/plugin.so"). Options after the
// plugin ("xla:cuda,tf32=false") are left to the backend.
func Validate(config string) error {
	name, opts, _ := strings.Cut(config, ":")
	switch {
	case name == "go":
		return nil
	case xlaNames[name]:
		if !XLALinked {
			return fmt.Errorf("backend %q: this singlora was built without the XLA backend (the default build is pure Go); "+
				"build bin/singlora-xla with \"make build-xla\" (needs cgo) and run that, or use the backend go", config)
		}
		plugin, _, _ := strings.Cut(opts, ",")
		return checkPlugin(config, plugin)
	}
	return fmt.Errorf("backend %q: unknown backend %q; want go (the default is %s), xla:cuda or xla:/absolute/path/to/plugin.so", config, name, DefaultConfig)
}

// checkPlugin checks the plugin part of an XLA configuration: a name, or an absolute path to a
// file.
func checkPlugin(config, plugin string) error {
	if plugin == "" {
		return fmt.Errorf("backend %q names no PJRT plugin (the XLA backend would take whichever it finds first): "+
			"want xla:cuda or xla:/absolute/path/to/plugin.so", config)
	}
	if !strings.ContainsAny(plugin, `/\`) && !strings.HasSuffix(plugin, ".so") {
		return nil // a plugin name, searched for when the backend is created
	}
	if !filepath.IsAbs(plugin) {
		return fmt.Errorf("backend %q: the PJRT plugin path %q is relative; give it as an absolute path (xla:%s)", config, plugin, absOr(plugin))
	}
	st, err := os.Stat(plugin)
	if err != nil {
		return fmt.Errorf("backend %q: PJRT plugin %s: %w; give the absolute path of an existing plugin file "+
			"(jax's CUDA 13 plugin is <venv>/lib/python3.*/site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so), "+
			"or a plugin name (xla:cuda) with PJRT_PLUGIN_LIBRARY_PATH set to the folder holding pjrt_c_api_cuda_plugin.so", config, plugin, err)
	}
	if st.IsDir() {
		return fmt.Errorf("backend %q: PJRT plugin %s is a folder; give the plugin file in it (xla:%s/<plugin>.so), "+
			"or set PJRT_PLUGIN_LIBRARY_PATH=%s and use a plugin name (xla:cuda)", config, plugin, plugin, plugin)
	}
	return nil
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// newXLA creates an XLA backend; a failure (no such plugin, a file that is not a plugin, a
// plugin that cannot start) is an error that says what to set. A panic from the backend's
// constructor becomes an error too.
func newXLA(config string) (b compute.Backend, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("the XLA backend crashed loading its plugin (%v): the file is likely not a PJRT plugin, or not one this go-xla can use", r)
		}
		if err != nil {
			err = fmt.Errorf("creating backend %q: %w\n%s", config, err, xlaHint())
		}
	}()
	return compute.NewWithConfig(config)
}

// xlaHint says how the XLA backend finds its plugin, with the environment in force.
func xlaHint() string {
	search := "the default folders (~/.local/lib/go-xla, /usr/local/lib/go-xla, LD_LIBRARY_PATH, /etc/ld.so.conf)"
	if p, ok := os.LookupEnv("PJRT_PLUGIN_LIBRARY_PATH"); ok {
		search = fmt.Sprintf("PJRT_PLUGIN_LIBRARY_PATH=%q", p)
	}
	return "  The XLA backend loads a PJRT plugin: xla:NAME looks for pjrt_c_api_NAME_plugin.so in " + search + ";\n" +
		"  set PJRT_PLUGIN_LIBRARY_PATH to the plugin's folder, or give the plugin file itself: --backend xla:/absolute/path/to/plugin.so\n" +
		"  (jax's CUDA 13 plugin: <venv>/lib/python3.*/site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so). A CUDA plugin is\n" +
		"  skipped when no NVIDIA GPU is visible (/dev/nvidia*) and needs the CUDA libraries (LD_LIBRARY_PATH, XLA_FLAGS=--xla_gpu_cuda_data_dir=DIR).\n" +
		"  There is no fallback to the go backend; see docs/GPU.md."
}
