// Package e2e holds Berth's end-to-end tests: the chart on a real Kubernetes
// cluster with real guests, the faults and the bad input (ci/e2e, ci/chaos),
// and the whole pod without Kubernetes (ci/local-pod.sh). Shell only brings
// things up (the cluster, the images, the test guest); every assertion is
// here, in Go, with client-go and contexts with deadlines. See ci/README.md.
//
// The tests need what ci/ brings up and are built only with the e2e build
// tag: go test -tags e2e ./... (GOWORK=off: this module's graph is its own).
package e2e
