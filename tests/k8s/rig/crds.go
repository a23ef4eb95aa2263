// Package rig pins sigs.k8s.io/gateway-api in this module's graph: the test
// rig installs the CRDs under its config/crd directory, located with
// `go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api`.
package rig

import _ "sigs.k8s.io/gateway-api/apis/v1"
