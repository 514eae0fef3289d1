package sweep

import "runtime"

func numCPU() int { return runtime.NumCPU() }
