//go:build xla

package backend

// This file links GoMLX's XLA backend ("xla", github.com/gomlx/go-xla/compute/xla) into the
// builds tagged xla ("make build-xla", which needs cgo). The backend loads a PJRT plugin .so
// with dlopen when it is created; nothing native is linked at build time. The autoinstall
// package is not imported: the backend never downloads a plugin.

import _ "github.com/gomlx/go-xla/compute/xla" // registers the backend "xla"

// XLALinked reports whether this binary was built with the XLA backend (the build tag xla).
const XLALinked = true
