//go:build tools

// Keeps sigs.k8s.io/kwok (and its dependencies) in go.mod/go.sum for `go build`.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
