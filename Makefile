# Ricochet: `make run` serves on :8080, `make test` runs the tests, `make bench` measures.
CARGO ?= cargo
VENV := .venv
PYTHON := $(VENV)/bin/python
FUZZ_SECONDS ?= 300

.PHONY: build run test bench bench-quick bench-build bench-core fuzz lint autobahn venv deps clean

build:
	$(CARGO) build --release

run: build
	./target/release/ricochet serve

# Python `websockets` is one of the independent clients the tests use.
venv: $(PYTHON)
$(PYTHON): tests/python/requirements.txt
	scripts/install-deps.sh
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/python/requirements.txt
	touch $(PYTHON)

# Debian packages the tests use (python3-venv, python3-lib2to3, haproxy);
# quick when they are there.
deps:
	scripts/install-deps.sh

# Unit tests once; the tests over real sockets once per backend; then the
# `make bench` runner end to end on a tiny matrix.
test: deps venv
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=epoll $(CARGO) test --all-targets
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=uring $(CARGO) test --test '*'
	$(CARGO) build -p ricochet-peers --bin peer-raw-echo
	$(CARGO) test -p ricochet-bench-runner

# Autobahn|Testsuite cases 1-10 against a release build; every case must be OK.
autobahn: build
	scripts/install-deps.sh
	AUTOBAHN_OUT=autobahn-reports/epoll scripts/autobahn.sh ./target/release/ricochet --backend epoll
	AUTOBAHN_OUT=autobahn-reports/uring scripts/autobahn.sh ./target/release/ricochet --backend uring

# Ricochet against peer servers, side by side (README "Performance"): 6 to 9
# minutes on 2 cores; bench-quick under 2. Results: bench/results/.
# BENCH_ARGS passes flags through, e.g. BENCH_ARGS="--only ricochet-epoll,ricochet-uring".
bench: bench-build
	RICOCHET_BENCH_COMMAND='make bench$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' ./target/release/ricochet-bench $(BENCH_ARGS)

bench-quick: bench-build
	RICOCHET_BENCH_COMMAND='make bench-quick$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' ./target/release/ricochet-bench --quick $(BENCH_ARGS)

# Ricochet, the peer servers (bench/peers) and the runner (bench/runner).
bench-build:
	$(CARGO) build --release --workspace

# Criterion micro-benchmarks of the protocol core.
bench-core:
	$(CARGO) bench --bench core

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && $(CARGO) fuzz run -s none -O session -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(VENV) autobahn-reports
