# Berth. `make test` and `make demo` set up everything they need themselves (as root, Debian 12).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
export CGO_ENABLED := 0
# Root-only tests (network namespaces, iptables, loop devices) fail instead of skipping.
export BERTH_REQUIRE_ROOT := 1

MODULES  := common netsetup init vmm hostile
# module:binary
BINARIES := netsetup:net-setup init:image-fetch init:seed-iso vmm:vmm
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Go modules outside go.work (their dependency graphs stay their own): tested with GOWORK=off.
SOLO_MODULES := charttest ci/cluster/csi ci/bench/diskargs
# The end-to-end module (outside go.work as well): its tests are behind the e2e build tag.
E2E_MODULES := e2e

.PHONY: all deps build lint test test-go test-chart images test-images test-console test-local test-e2e chaos demo demo-down demo-local bench clean

all: build

deps:
	ci/install-deps.sh

## build: static binaries into bin/
build:
	@mkdir -p bin
	@for mb in $(BINARIES); do m=$${mb%%:*}; b=$${mb##*:}; \
	  [ -f $$m/cmd/$$b/main.go ] || continue; \
	  echo "build bin/$$b"; \
	  (cd $$m && go build -trimpath -ldflags "-s -w" -o ../bin/$$b ./cmd/$$b); \
	done

# Every shell script: a file under ci/, images/ or .ci/ whose first line runs bash or sh; the
# libraries they source (*.sh without one) are checked as bash, without the checks that need the
# script that sources them (SC2034 assigned but unused, SC2154 used but not assigned). Sourced
# paths: .shellcheckrc.
SHELL_SCRIPTS = $(shell find ci images .ci -type f -not -path '*/node_modules/*' -exec awk 'FNR == 1 && /^\#!.*(bash|\/sh)/ { print FILENAME } { nextfile }' {} + | sort)
SHELL_LIBS = $(filter-out $(SHELL_SCRIPTS),$(shell find ci images .ci -type f -name '*.sh' -not -path '*/node_modules/*' | sort))

## lint: gofmt, go vet, staticcheck over every module (e2e with its build tag); shellcheck over every shell script
lint:
	@bad=$$(gofmt -l $(MODULES)); if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@for m in $(MODULES); do [ -n "$$(find $$m -name '*.go' | head -1)" ] || continue; \
	  (cd $$m && go vet ./... && staticcheck ./...); done
	@for m in $(SOLO_MODULES); do (cd $$m && GOWORK=off go vet ./... && GOWORK=off staticcheck ./...); done
	@for m in $(MODULES) $(SOLO_MODULES) $(E2E_MODULES); do (cd $$m && GOWORK=off go mod tidy -diff >/dev/null) || \
	  { echo "$$m: go.mod/go.sum are not tidy without go.work (the image builds use GOWORK=off): cd $$m && GOWORK=off go mod tidy"; exit 1; }; done
	@for m in $(E2E_MODULES); do (cd $$m && GOWORK=off go vet -tags e2e ./... && GOWORK=off staticcheck -tags e2e ./...); done
	@bad=$$(gofmt -l $(SOLO_MODULES) $(E2E_MODULES)); if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@shellcheck -x $(SHELL_SCRIPTS)
	@shellcheck -x -s bash -e SC2034,SC2154 $(SHELL_LIBS)
	@echo "lint: ok"

## test-go: unit, golden, fuzz-seed and root network-namespace tests of every module
## (vmm/vmm boots the real test guests under TCG, the UEFI one with Secure Boot and a TPM twice,
## ~20 min on 2 busy cores: every wait in it is bounded on its own, so go test's timeout is only the
## backstop)
GO_TEST_TIMEOUT ?= 35m
test-go: build
	@for m in $(MODULES); do [ -n "$$(find $$m -name '*_test.go' | head -1)" ] || continue; \
	  (cd $$m && go test -count=1 -timeout $(GO_TEST_TIMEOUT) ./...); done
	for m in ci/cluster/csi ci/bench/diskargs; do (cd $$m && GOWORK=off go test -count=1 -timeout 10m ./...); done

## test-chart: helm lint --strict and helm template over chart/examples, then the Helm SDK tests
test-chart:
	ci/chart/test.sh

## images: every container image (podman), exported to out/images/<name>.oci.tar
images: build
	ci/images/build.sh

## test-images: each image runs its binary's -h and its tools, with no network
test-images: images
	ci/images/test.sh

## test-console: the web console's browser check must fail on a screen that ignores typing and pass on the test guest
test-console: images
	ci/console/selftest.sh

## test-local: the whole pod without Kubernetes, in network namespaces, with a real guest (e2e/localpod)
test-local: build
	cd e2e && GOWORK=off go test -tags e2e -count=1 -v -timeout 60m ./localpod/

## test-e2e: the chart on a real single-node Kubernetes built here (both CNI setups), real guests
## (the shell brings things up; the checks are e2e/cluster, go test -tags e2e)
test-e2e: build
	cd e2e && GOWORK=off go test -count=1 ./...
	ci/e2e/cluster-test.sh

## chaos: faults, bad input through the chart and least privilege, on the real cluster (docs/reliability.md)
chaos: build
	ci/chaos/run.sh

## test: everything CI runs, in order
test: deps lint test-go test-chart test-images test-console test-local test-e2e chaos

## demo: a single-node Kubernetes here (or $$KUBECONFIG's cluster), the images, helm install, SSH once
demo: deps build
	ci/cluster/demo.sh

## demo-down: helm uninstall the demo and take the local cluster down
demo-down:
	ci/cluster/demo.sh down

## demo-local: the whole pod without Kubernetes, left running (ci/local-pod.sh up; stop: ci/local-pod.sh down)
demo-local: deps build
	ci/local-pod.sh up

bench: deps build
	ci/bench/run.sh

clean:
	rm -rf bin out
