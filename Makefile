# Thin wrapper around CMake. `make run` and `make test` are the two commands a
# newcomer needs (README.md); everything else is for developers.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)
PYTEST     ?= /usr/bin/python3 -m pytest
RUN_ARGS   ?= -upload-dir ./data

.PHONY: all build run test deps deps-test unit integration upload-tests clients bench bench-upload install \
        clean asan fuzz-build fuzz test-repeat

all: build

deps:
	@sh scripts/install-deps.sh

deps-test:
	@sh scripts/install-deps.sh test

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTUSC_TESTS=OFF >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/tusc $(RUN_ARGS)

asan: deps-test
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTUSC_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# libFuzzer targets (tests/fuzz) under ASan+UBSan; needs clang.
fuzz-build: deps-test
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTUSC_FUZZ=ON -DTUSC_TESTS=OFF >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# Each target for FUZZ_SECONDS (make fuzz FUZZ_SECONDS=600).
fuzz: fuzz-build
	sh scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clients: deps-test
	cd tests/clients && npm ci --no-audit --no-fund --loglevel=error
	cd bench/node && npm ci --no-audit --no-fund --loglevel=error

unit: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure

integration: asan clients
	TUSC_BIN=$(CURDIR)/$(ASAN_BUILD)/tusc $(PYTEST) -q tests/integration

# tusc-upload against tusc and @tus/server (tests/upload).
upload-tests: asan clients
	TUSC_BIN=$(CURDIR)/$(ASAN_BUILD)/tusc $(PYTEST) -q -p no:cacheprovider tests/upload

# Flaky-test hunt: the integration suite N times, stopping at the first failing run.
# LOAD=1 keeps every core busy meanwhile; K=expr passes -k expr to pytest.
N    ?= 20
LOAD ?= 0
K    ?=
test-repeat: asan clients
	TUSC_BIN=$(CURDIR)/$(ASAN_BUILD)/tusc PYTEST="$(PYTEST)" \
	  sh scripts/test-repeat.sh "$(N)" "$(LOAD)" "$(K)"

# Everything CI runs: 20 s of each fuzz target, the unit tests, then the uploader,
# integration and real-client suites against the sanitizer build in one pytest run
# (last, so CI reads one pytest summary).
test: asan clients fuzz-build
	sh scripts/fuzz.sh $(FUZZ_BUILD) 20
	cd $(ASAN_BUILD) && ctest --output-on-failure
	TUSC_BIN=$(CURDIR)/$(ASAN_BUILD)/tusc $(PYTEST) -q -p no:cacheprovider tests/upload tests/integration

bench: build
	$(MAKE) -C bench TUSC_BIN=$(CURDIR)/$(BUILD)/tusc

# tusc-upload and tus-js-client side by side (bench/README.md, "Uploader").
bench-upload: build
	cd bench/node && npm ci --no-audit --no-fund --loglevel=error
	$(MAKE) -C bench upload TUSC_BIN=$(CURDIR)/$(BUILD)/tusc

# The binaries, plus their help pages as man pages tusc(1) and tusc-upload(1)
# (preformatted, so they read the same).
PREFIX ?= /usr/local
MAN_FROM_HELP = sed 's/\\/\\e/g; s/^[.'"'"']/\\\&&/'
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	{ printf '.TH TUSC 1\n.nf\n'; ./$(BUILD)/tusc -help | $(MAN_FROM_HELP); printf '.fi\n'; } \
	  > $(DESTDIR)$(PREFIX)/share/man/man1/tusc.1
	{ printf '.TH TUSC-UPLOAD 1\n.nf\n'; ./$(BUILD)/tusc-upload --help | $(MAN_FROM_HELP); printf '.fi\n'; } \
	  > $(DESTDIR)$(PREFIX)/share/man/man1/tusc-upload.1

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
