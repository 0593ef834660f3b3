# Ricochet: `make run` serves on :8080, `make test` runs the tests, `make bench` measures.
CARGO ?= cargo
VENV := .venv
PYTHON := $(VENV)/bin/python
FUZZ_SECONDS ?= 300

.PHONY: build run test bench fuzz lint autobahn venv clean

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

# Unit tests once; the tests over real sockets once per backend.
test: venv
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=epoll $(CARGO) test --all-targets
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=uring $(CARGO) test --test '*'

# Autobahn|Testsuite cases 1-10 against a release build; every case must be OK.
autobahn: build
	scripts/install-deps.sh
	AUTOBAHN_OUT=autobahn-reports/epoll scripts/autobahn.sh ./target/release/ricochet --backend epoll
	AUTOBAHN_OUT=autobahn-reports/uring scripts/autobahn.sh ./target/release/ricochet --backend uring

bench:
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
