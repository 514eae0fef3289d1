//go:build !xla

package backend

// XLALinked reports whether this binary was built with the XLA backend (the build tag xla,
// "make build-xla"). The default build is pure Go and has only the "go" backend.
const XLALinked = false
