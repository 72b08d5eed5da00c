# opsflow — the two commands a newcomer needs:
#   make demo   run the demo on the local engine
#   make test   run the whole test suite (lint, unit, integration, CLI)
# Everything they need is installed under the repository: the local cloud's Python venv in
# .venv (infra/localcloud/localcloud.sh install), npm packages in bench/als.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo demo-fail demo-engine test lint build bench bench-deps bench-pipeline clean fuzz fuzz-smoke

build:
	$(CARGO) build --bin opsflow

# The provisioning pipeline: a CloudFormation Create request through the request handler and
# the real state machine on the local engine, against the local cloud.
demo: build
	$(CARGO) run -q --bin opsflow -- demo

# The same, with a bootstrap command that exits 1: the FAILED answer names the step.
demo-fail: build
	$(CARGO) run -q --bin opsflow -- demo --bootstrap-exit 1

# The engine alone: an example workflow with Step Functions Local mocks.
demo-engine:
	$(CARGO) build --release --bin opsflow
	./scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint
	$(CARGO) test --workspace
	$(CARGO) run -q --bin opsflow -- sfn validate bench/definitions/*.asl.json examples/*.asl.json benches/*.asl.json
	infra/localcloud/localcloud.sh test -q
	infra/validate.sh

# Fuzzing every parser of untrusted input (README, Fuzzing): libFuzzer through cargo-fuzz on the
# stable toolchain, a table of executions, corpus, coverage and findings per target.
#   make fuzz FUZZ_RUNS=1000000      or   make fuzz FUZZ_SECONDS=120   (per target)
#   make fuzz FUZZ_TARGETS="jsonata path_query"
FUZZ_RUNS ?=
FUZZ_SECONDS ?=
FUZZ_TARGETS ?=
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

# CI's share: each target a few seconds, after replaying its seeds and regression inputs.
fuzz-smoke:
	FUZZ_SECONDS=3 fuzz/run.sh

# aws-local-stepfunctions, for the side-by-side figures of the engine benchmark.
bench-deps:
	cd bench/als && npm ci --no-audit --no-fund

bench: bench-deps
	$(CARGO) bench -p opsflow-asl --bench engine
	$(CARGO) bench --bench alerts
	$(CARGO) bench --bench time_to_ready
	$(CARGO) bench --bench fleet
	$(CARGO) bench --bench procedures
	$(CARGO) bench -p opsflow-functions --bench cold_start

# The two benchmarks of the provisioning pipeline alone (see README, Benchmarks).
bench-pipeline:
	$(CARGO) bench --bench time_to_ready
	$(CARGO) bench -p opsflow-functions --bench cold_start

clean:
	$(CARGO) clean
