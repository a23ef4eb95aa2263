// Package conformance runs the upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, the version go.mod pins) unmodified,
// against the cluster of KUBECONFIG: in portcullis's tests, the test control
// plane with its controllers, the node agent and a running
// `portcullis serve --kubernetes` (tests/kubernetes/upstream_conformance.rs
// starts them and runs this test's binary, which scripts/k8s-rig.sh builds
// as bin/conformance.test).
//
// Every setting is one of the suite's own flags (utils/flags):
// -gateway-class, -conformance-profiles, -supported-features,
// -report-output, -organization, -project, -url, -version, -contact, ...
package conformance

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
