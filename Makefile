# Ricochet: `make run` serves on :8080, `make test` runs the tests, `make bench` measures.
CARGO ?= cargo
VENV := .venv
PYTHON := $(VENV)/bin/python
FUZZ_SECONDS ?= 300

.PHONY: install install-files deb deb-tools build run test bench bench-quick bench-rooms rooms-proof bench-cluster bench-build bench-core soak docs fuzz lint autobahn autobahn-deflate venv deps node-deps clean

# The TLS crypto provider compiled in: ring (the default) or aws-lc-rs
# (docs/tls.md), e.g. `make bench TLS_PROVIDER=aws-lc-rs`.
TLS_PROVIDER ?= ring
AWS_LC := $(filter aws-lc-rs,$(TLS_PROVIDER))

build:
	$(CARGO) build --release $(if $(AWS_LC),--features aws-lc-rs)

run: build
	./target/release/ricochet serve

# Python `websockets` is one of the independent clients the tests use.
venv: $(PYTHON)
$(PYTHON): tests/python/requirements.txt
	scripts/install-deps.sh
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/python/requirements.txt
	touch $(PYTHON)

# Debian packages the tests use (python3-venv, python3-lib2to3, haproxy,
# nodejs, npm, chromium); quick when they are there.
deps:
	scripts/install-deps.sh

# Node's ws, another independent client (versions pinned in package-lock.json).
node-deps: tests/node/node_modules/.package-lock.json
tests/node/node_modules/.package-lock.json: tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --silent

# The transport tests that also run over TLS (wss://, a certificate from a
# test CA made at run time). The two skipped split one socket between a reader
# and a writer thread, which a TLS stream cannot do; tests/tls_* cover TLS
# backpressure and shutdown on their own.
TLS_TESTS := --test interop_rust_client --test interop_python_client --test random_fragmentation_echoes_intact \
	--test timeouts_cut_off_slow_and_silent_clients --test connection_limit_refuses_with_503 \
	--test protocol_violations_get_close_codes --test graceful_shutdown_loses_nothing \
	--test many_small_frames_per_read_echo_intact --test shards_share_one_port \
	--test compressed_echoes_reach_independent_clients --test compressed_messages_wait_for_a_free_inflater \
	--test tokens_decide_who_may_connect --test metrics_move_when_things_happen \
	--test proxy_protocol_names_the_client --test per_client_limits_hold_per_address \
	--test rate_limits_slow_clients_without_loss --test a_client_that_stops_reading_cannot_wedge_a_shard \
	--test rooms_deliver_every_message_to_every_member --test rooms_keep_the_rules_of_every_connection
TLS_SKIP := --skip a_backed_up_client_gets_every_byte_before_1001 --skip fixed_replies_between_pongs_all_arrive

# Unit tests once; the tests over real sockets once per backend, and the
# transport ones again over TLS per backend; then the `make bench` runner end
# to end on a tiny matrix.
test: deps venv node-deps deb-tools
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=epoll $(CARGO) test --all-targets
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=uring $(CARGO) test --test '*'
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=epoll RICOCHET_TEST_TLS=1 $(CARGO) test $(TLS_TESTS) -- $(TLS_SKIP)
	RICOCHET_PYTHON=$(abspath $(PYTHON)) RICOCHET_TEST_BACKEND=uring RICOCHET_TEST_TLS=1 $(CARGO) test $(TLS_TESTS) -- $(TLS_SKIP)
	$(CARGO) build -p ricochet-peers --bin peer-raw-echo --bin peer-tungstenite-rooms
	$(CARGO) test -p ricochet-bench-runner

# The permessage-deflate cases (groups 12 and 13) CI runs: 12.1-12.5 and
# 13.1-13.7, cases 1-6 of each, and 13.x.11 (79 of 216, about a minute per
# backend here). The suite matches a pattern as a prefix, so they are listed.
comma := ,
empty :=
space := $(empty) $(empty)
DEFLATE_CASES := $(subst $(space),$(comma),$(strip \
	$(foreach g,1 2 3 4 5,$(foreach c,1 2 3 4 5 6,12.$(g).$(c))) \
	$(foreach g,1 2 3 4 5 6 7,$(foreach c,1 2 3 4 5 6 11,13.$(g).$(c)))))

# Autobahn|Testsuite cases 1-10 against a release build, ws:// and wss:// on
# each backend, then with --reply room on each backend (each test connection
# is a room of one, which behaves as the echo), then the permessage-deflate
# subset on each backend; every case must be OK.
autobahn: build
	scripts/install-deps.sh
	AUTOBAHN_OUT=autobahn-reports/epoll scripts/autobahn.sh ./target/release/ricochet --backend epoll
	AUTOBAHN_OUT=autobahn-reports/uring scripts/autobahn.sh ./target/release/ricochet --backend uring
	AUTOBAHN_TLS=1 AUTOBAHN_OUT=autobahn-reports/epoll-tls scripts/autobahn.sh ./target/release/ricochet --backend epoll
	AUTOBAHN_TLS=1 AUTOBAHN_OUT=autobahn-reports/uring-tls scripts/autobahn.sh ./target/release/ricochet --backend uring
	AUTOBAHN_OUT=autobahn-reports/epoll-room scripts/autobahn.sh ./target/release/ricochet --backend epoll --reply room
	AUTOBAHN_OUT=autobahn-reports/uring-room scripts/autobahn.sh ./target/release/ricochet --backend uring --reply room
	AUTOBAHN_CASES='$(DEFLATE_CASES)' AUTOBAHN_EXCLUDE= AUTOBAHN_OUT=autobahn-reports/epoll-deflate \
		scripts/autobahn.sh ./target/release/ricochet --backend epoll --permessage-deflate
	AUTOBAHN_CASES='$(DEFLATE_CASES)' AUTOBAHN_EXCLUDE= AUTOBAHN_OUT=autobahn-reports/uring-deflate \
		scripts/autobahn.sh ./target/release/ricochet --backend uring --permessage-deflate

# All 216 permessage-deflate cases (12.* and 13.*) on each backend: about half
# an hour per backend (docs/conformance.md).
autobahn-deflate: build
	scripts/install-deps.sh
	AUTOBAHN_CASES='12.*,13.*' AUTOBAHN_EXCLUDE= AUTOBAHN_OUT=autobahn-reports/epoll-deflate-all \
		scripts/autobahn.sh ./target/release/ricochet --backend epoll --permessage-deflate
	AUTOBAHN_CASES='12.*,13.*' AUTOBAHN_EXCLUDE= AUTOBAHN_OUT=autobahn-reports/uring-deflate-all \
		scripts/autobahn.sh ./target/release/ricochet --backend uring --permessage-deflate

# Ricochet against peer servers, side by side (docs/performance.md): about 35
# minutes on 2 cores; bench-quick about 4. Results: bench/results/.
# BENCH_ARGS passes flags through, e.g. BENCH_ARGS="--only ricochet-epoll,ricochet-uring".
# A full run (no BENCH_ARGS) writes its tables into docs/performance.md and
# its small table into README.md; with BENCH_ARGS, or with BENCH_DOCS=, both
# are left alone.
BENCH_DOCS ?= $(if $(BENCH_ARGS),,--guide docs/performance.md --summary README.md)
bench: bench-build
	RICOCHET_BENCH_COMMAND='make bench$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' ./target/release/ricochet-bench $(BENCH_DOCS) $(BENCH_ARGS)

# The fan-out tables alone (rooms: Ricochet with --reply room and the room
# peers), written into docs/performance.md between the bench-rooms markers;
# about 10 minutes here (with the gorilla hub peer).
bench-rooms: bench-build
	RICOCHET_BENCH_COMMAND='make bench-rooms$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' ./target/release/ricochet-bench \
		--only ricochet-epoll-rooms,ricochet-uring-rooms,sockudo-ws-rooms,tokio-tungstenite-rooms,gorilla-hub-rooms \
		$(if $(BENCH_ARGS),,--guide docs/performance.md) $(BENCH_ARGS)

# The rooms' memory bound at full size: 1,000 members of which 100 never
# read, one publisher sending 1 GiB of 16 KiB messages, every byte checked
# by every reader, under --slow-member drop and close (about 12 minutes
# here; `make test` runs the same test at a tenth of the members and a
# thirty-second of the bytes).
rooms-proof:
	RICOCHET_ROOM_PROOF=full $(CARGO) test --release --test slow_room_members_cost_only_themselves -- --nocapture --test-threads 1

# Rooms across processes linked through a real nats-server (--cluster),
# against rooms in one process, and the bridge's CPU per message each way;
# Markdown tables on standard output (docs/cluster.md keeps the current
# ones). About 4 min. BACKEND=uring for the io_uring backend.
bench-cluster: build
	scripts/install-deps.sh
	scripts/bench-cluster.py --backend $(or $(BACKEND),epoll)

bench-quick: bench-build
	RICOCHET_BENCH_COMMAND='make bench-quick$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' ./target/release/ricochet-bench --quick $(BENCH_ARGS)

# Ricochet, the peer servers (bench/peers) and the runner (bench/runner);
# the Go peers (bench/peers/go) are built by the runner itself, with the Go
# and gorilla packages installed here.
bench-build:
	scripts/install-deps.sh --bench
	$(CARGO) build --release --workspace $(if $(AWS_LC),--features ricochet/aws-lc-rs$(comma)ricochet-peers/aws-lc-rs)

# Criterion micro-benchmarks of the protocol core.
bench-core:
	$(CARGO) bench --bench core

# docs/settings.md and docs/metrics-reference.md, written by the binary from
# its --help definitions and its /metrics families (tests/docs_match_the_code.rs
# fails when they are stale).
docs:
	$(CARGO) build
	rm -rf target/generated && ./target/debug/ricochet generate target/generated
	cp target/generated/settings.md docs/settings.md
	cp target/generated/metrics.md docs/metrics-reference.md

# Ten minutes of echo clients (ws://, wss://, deflate) beside 100 clients that
# push 1 MiB messages and never read (issue #23); SOAK_SECONDS to change.
SOAK_SECONDS ?= 600
soak: build
	scripts/soak.sh $(SOAK_SECONDS)

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && $(CARGO) fuzz run -s none -O session -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --features ricochet/aws-lc-rs,ricochet-peers/aws-lc-rs -- -D warnings

# Installs the release binary, the systemd unit (its paths follow PREFIX), the
# sysctl.d file, the example config (kept if one is there) and the tuning
# guide. DESTDIR stages into another root, e.g. for a package.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
BIN ?= target/release/ricochet
# Where `ricochet generate` writes the man pages and completions.
GEN ?= $(dir $(BIN))generated
install: build install-files
install-files:
	install -D -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ricochet
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/bin/ricochet|$(PREFIX)/bin/ricochet|' \
		-e 's|/usr/share/doc/ricochet|$(PREFIX)/share/doc/ricochet|' \
		-e 's|/etc/ricochet/|$(SYSCONFDIR)/ricochet/|' \
		tuning/ricochet.service > $(DESTDIR)$(UNITDIR)/ricochet.service
	chmod 644 $(DESTDIR)$(UNITDIR)/ricochet.service
	sed -e 's|/usr/share/doc/ricochet|$(PREFIX)/share/doc/ricochet|' tuning/ricochet.socket > $(DESTDIR)$(UNITDIR)/ricochet.socket
	chmod 644 $(DESTDIR)$(UNITDIR)/ricochet.socket
	install -D -m 644 tuning/sysctl.d/99-ricochet.conf $(DESTDIR)$(SYSCONFDIR)/sysctl.d/99-ricochet.conf
	test -e $(DESTDIR)$(SYSCONFDIR)/ricochet/ricochet.toml || \
		install -D -m 644 tuning/ricochet.toml $(DESTDIR)$(SYSCONFDIR)/ricochet/ricochet.toml
	install -D -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/ricochet/README.md
	install -d $(DESTDIR)$(PREFIX)/share/doc/ricochet/docs
	install -m 644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/ricochet/docs/
	# Man pages and completions, written by the binary from its own --help definitions.
	rm -rf $(GEN) && $(BIN) generate $(GEN)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(GEN)/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -D -m 644 $(GEN)/completions/ricochet.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ricochet
	install -D -m 644 $(GEN)/completions/_ricochet $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_ricochet
	install -D -m 644 $(GEN)/completions/ricochet.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ricochet.fish

# A Debian package (cargo-deb, installed if missing) of what `make install`
# installs, with /usr paths; the config is a conffile; the binary is stripped
# (no debug symbols shipped); postinst applies the sysctl file and reloads
# systemd's units. Lands in target/debian/. The unit goes in as it is: its
# paths are the package's.
deb: build
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb
	rm -rf target/release/generated && target/release/ricochet generate target/release/generated
	$(CARGO) deb --no-build --strip

# cargo-deb, for the package test.
deb-tools:
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb

clean:
	$(CARGO) clean
	rm -rf $(VENV) autobahn-reports
