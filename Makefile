# agl — GNU make build. `make` builds libagl and the three daemons; see README.md.
# Switches: SANITIZE=address,undefined  CUDA=1  MPI=1  PREFIX=/usr/local

CC       ?= cc
PREFIX   ?= /usr/local
SANITIZE ?=
CUDA     ?= 0
MPI      ?= 0
AGL_VERSION := 0.1.0

BUILD := build$(if $(SANITIZE),-san)
GEN   := $(BUILD)/gen

PKGS     := libmicrohttpd jansson libcurl libprotobuf-c libpq zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -pthread \
           -Icommon -I$(GEN) $(PKG_CFLAGS) -DAGL_VERSION='"$(AGL_VERSION)"' -MMD -MP
LDLIBS  += $(PKG_LIBS) -lm -pthread
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif
ifeq ($(MPI),1)
CC      := mpicc
CFLAGS  += -DAGL_WITH_MPI
endif
ifeq ($(CUDA),1)
NVCC    ?= nvcc
CFLAGS  += -DAGL_WITH_CUDA -I/usr/local/cuda/include
LDLIBS  += -L/usr/local/cuda/lib64 -lcudart -lcublas -lnccl
endif

# ---- sources ----
PROTO_SRC  := $(shell find proto -name '*.proto' 2>/dev/null | LC_ALL=C sort)
PROTO_C    := $(patsubst proto/%.proto,$(GEN)/%.pb-c.c,$(PROTO_SRC))
COMMON_SRC := $(wildcard common/*.c)
STORED_SRC := $(wildcard stored/*.c)
RUNNERD_SRC := $(wildcard runnerd/*.c)
TRAINERD_SRC := $(shell find trainerd -name '*.c' 2>/dev/null)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
COMMON_OBJ := $(call obj,$(COMMON_SRC)) $(PROTO_C:.c=.o)
STORED_OBJ := $(call obj,$(STORED_SRC))
RUNNERD_OBJ := $(call obj,$(RUNNERD_SRC))
TRAINERD_OBJ := $(call obj,$(TRAINERD_SRC))
LIBAGL := $(BUILD)/lib/libagl.a
BINS := $(BUILD)/bin/stored $(BUILD)/bin/runnerd $(BUILD)/bin/trainerd
# The example agents written in C (standalone programs, not linked with libagl).
EXAMPLE_BINS := $(BUILD)/examples/c_agent $(BUILD)/examples/reverse_agent

UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null)
UNIT_BIN := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRC))

.PHONY: all deps test unit integration compat mpi-build bench bench-store bench-proxy soak-store bench-apo bench-train bench-gen demo format format-check lint install clean venv
all: $(BINS) $(EXAMPLE_BINS)

$(BUILD)/examples/c_agent: examples/c_agent.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -lcurl -ljansson
$(BUILD)/examples/reverse_agent: examples/rl/reverse_agent.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -ljansson

# ---- generated protobuf code ----
$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) $<
$(GEN)/%.pb-c.o: $(GEN)/%.pb-c.c | $(PROTO_C)
	$(CC) $(CFLAGS) -Wno-error -c -o $@ $<

# generated sources are kept (not make intermediates), so nothing is regenerated needlessly
.SECONDARY: $(PROTO_C) $(PROTO_C:.c=.h) $(GEN)/migrations.c

# every object may include generated headers
$(BUILD)/obj/%.o: %.c | $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIBAGL): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/stored: $(STORED_OBJ) $(GEN)/migrations.o $(LIBAGL)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/runnerd: $(RUNNERD_OBJ) $(LIBAGL)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/trainerd: $(TRAINERD_OBJ) $(LIBAGL)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# trainerd rl: OpenMP threads and vectorised loops (`omp simd`) for the CPU model only.
$(BUILD)/obj/trainerd/rl/%.o: CFLAGS += -O3 -fopenmp
$(BUILD)/bin/trainerd: LDLIBS += -fopenmp
$(BUILD)/tests/unit/trainerd/%: LDLIBS += -fopenmp

# Unit tests: tests/unit/<dir>/test_x.c links libagl, plus <dir>'s objects (minus main.o)
# when <dir> is a daemon, so each test can reach the module it mirrors.
define unit_rule
$(BUILD)/$(1:.c=): $(call obj,$(1)) $$(filter-out %/main.o,$$(call obj,$$(shell find $(word 3,$(subst /, ,$(1))) -name '*.c' 2>/dev/null))) $(GEN)/migrations.o $(LIBAGL)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) -lcmocka
endef
$(foreach t,$(UNIT_SRC),$(eval $(call unit_rule,$(t))))

# ---- dependencies and the test venv (cached by requirements hash) ----
deps:
	@bash deploy/install-deps.sh --check-or-install

VENV_HASH := $(shell cat tests/requirements.txt 2>/dev/null | sha256sum | cut -c1-12)
VENV := .cache/venv-$(VENV_HASH)
$(VENV)/.ok: tests/requirements.txt
	@rm -rf $(VENV) && mkdir -p .cache
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@
venv: $(VENV)/.ok

# ---- tests ----
unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# The MPI data-parallel test (-np 2 == -np 1) needs a trainerd built with MPI=1; it is built
# beside the normal tree whenever mpicc is installed (install-deps.sh installs OpenMPI).
MPI_BUILD := $(BUILD)-mpi
mpi-build:
	@if command -v mpicc >/dev/null 2>&1; then $(MAKE) --no-print-directory MPI=1 BUILD=$(MPI_BUILD) $(MPI_BUILD)/bin/trainerd; fi

integration: all mpi-build $(VENV)/.ok
	AGL_BUILD=$(BUILD) AGL_MPI_BUILD=$(MPI_BUILD) $(VENV)/bin/python -m pytest -q tests/integration

compat: all $(VENV)/.ok
	AGL_BUILD=$(BUILD) $(VENV)/bin/python -m pytest -q tests/compat

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) compat

bench: all $(VENV)/.ok bench-store bench-proxy bench-apo bench-train bench-gen
	@if [ -f tests/bench/run.py ]; then AGL_BUILD=$(BUILD) $(VENV)/bin/python tests/bench/run.py; fi

# Store benchmark (docs/performance.md): stored vs the reference server vs pgbench, one table.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--duration 4 --skip scenario".
$(BUILD)/bench/loadgen: tests/bench/loadgen.c tests/bench/bench_http.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -pthread
bench-store: all $(BUILD)/bench/loadgen $(VENV)/.ok
	$(VENV)/bin/python tests/bench/bench_store.py --build $(BUILD) $(BENCH_ARGS)

# Proxy benchmark (docs/runnerd.md): runnerd's LLM proxy against a fast local upstream, added
# latency and req/s, json and streaming, recorded or not. BENCH_PROXY_ARGS e.g. "--seconds 5".
bench-proxy: all $(VENV)/.ok
	AGL_BUILD=$(BUILD) $(VENV)/bin/python tests/bench/bench_proxy.py $(BENCH_PROXY_ARGS)

# Memory soak of stored (docs/performance.md): 10 minutes of rotating workloads, RSS sampled.
soak-store: all $(BUILD)/bench/loadgen $(VENV)/.ok
	$(VENV)/bin/python tests/bench/soak_store.py --build $(BUILD) $(SOAK_ARGS)

# APO benchmark (docs/performance.md): trainerd apo vs the reference APO.run, same stored/runnerd/
# fake LLM, one table. The reference renders its prompts with poml (not in tests/requirements.txt).
bench-apo: all $(VENV)/.ok
	@$(VENV)/bin/python -c 'import poml' 2>/dev/null || $(VENV)/bin/pip install -q poml==0.0.8
	$(VENV)/bin/python tests/bench/bench_apo.py --build $(BUILD) $(BENCH_APO_ARGS)

# Training/generation benchmark (docs/performance.md): trainerd's CPU decoder vs PyTorch, same
# configs and threads, one table. The PyTorch venv is cached under .cache/ by the hash of
# tests/bench/requirements-train.txt. BENCH_TRAIN_ARGS passes options, e.g. "--configs tiny".
bench-train: all
	python3 tests/bench/bench_train.py --build $(BUILD) $(BENCH_TRAIN_ARGS)

# Generation benchmark (docs/performance.md): `trainerd serve` (fp32 and --infer-dtype q8_0) vs
# llama-cpp-python on SmolLM2-135M, batch 1 and 16, same GGUF and threads, one table. The
# reference venv (.cache/venv-gen-*, llama.cpp compiled by pip) is built on first use.
# BENCH_GEN_ARGS passes options through, e.g. BENCH_GEN_ARGS="--reps 1 --dtypes q8_0".
bench-gen: all
	python3 tests/bench/bench_gen.py --build $(BUILD) $(BENCH_GEN_ARGS)

demo: deps
	$(MAKE) all
	@if [ -x examples/demo.sh ]; then examples/demo.sh; else echo "make demo: the end-to-end demo is not built yet (see issues 7 and 8)"; fi

# ---- hygiene ----
FORMAT_SRC = $(shell git ls-files '*.c' '*.h' '*.cu' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRC)
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --suppress=missingIncludeSystem --suppress=unknownMacro --inline-suppr -Icommon -I$(GEN) common stored runnerd trainerd

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/agl/migrations
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 migrations/*.sql $(DESTDIR)$(PREFIX)/share/agl/migrations/

clean:
	rm -rf build build-san build-mpi build-san-mpi

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Migrations are compiled into stored so an installed binary needs no share/ lookup.
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
$(GEN)/migrations.c: $(MIGRATIONS) Makefile
	@mkdir -p $(GEN)
	@{ echo '/* generated from the migrations directory, do not edit */'; \
	   echo 'const char *const agl_migrations[][2] = {'; \
	   for f in $(MIGRATIONS); do \
	     printf '{"%s",\n' "$$(basename $$f .sql)"; \
	     sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; \
	     echo '},'; \
	   done; echo '{0, 0}};'; } > $@
$(GEN)/migrations.o: $(GEN)/migrations.c
	$(CC) $(CFLAGS) -c -o $@ $<

# apo's critique/edit prompts are compiled in with .incbin: rebuild when a prompt file changes.
$(BUILD)/obj/trainerd/apo/apo_prompts.o: $(wildcard trainerd/apo/prompts/*)
