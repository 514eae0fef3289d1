// Package backend chooses and configures the GoMLX compute backend that singlora runs on.
//
// The default is GoMLX's pure-Go backend ("go"); set SINGLORA_BACKEND (or GOMLX_BACKEND) to
// choose another one, e.g. "xla:cuda" on a machine with a PJRT plugin. The graph code in this
// project is backend-agnostic.
package backend

import (
	"fmt"
	"os"
	"sync"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // registers the pure-Go backend "go"
)

// DefaultConfig is the backend configuration used when neither SINGLORA_BACKEND nor
// GOMLX_BACKEND is set.
const DefaultConfig = "go"

// Config returns the backend configuration string in force.
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
		shared, initErr = compute.NewWithConfig(Config())
		if initErr != nil {
			initErr = fmt.Errorf("creating backend %q: %w", Config(), initErr)
		}
	})
	return shared, initErr
}
