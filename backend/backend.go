// Package backend chooses and configures the GoMLX compute backend that singlora runs on.
//
// The default is GoMLX's pure-Go backend with unlimited worker parallelism
// ("go:parallelism=-1", see DefaultConfig and README.md for why); set SINGLORA_BACKEND (or
// GOMLX_BACKEND) to choose another one, e.g. "xla:cuda" on a machine with a PJRT plugin. The
// graph code in this project is backend-agnostic.
package backend

import (
	"fmt"
	"os"
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
func New(config string) (compute.Backend, error) {
	name, opts, _ := strings.Cut(config, ":")
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
