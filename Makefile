# cltrain — see README.md. `make` builds ./cltrain; `make test` runs the Criterion suite on
# the pocl CPU device; `make demo` runs the transfer-learning workflow on Fashion-MNIST.
# Goals that need the dependencies run in two passes: this make installs them
# (tools/install-deps.sh), then a sub-make reads the configuration (pkg-config, mpicc) with
# them in place. Read before the install, `make demo` on a fresh machine built a cltrain
# without MPI that the next `make test` ran under mpirun.
DEPS_GOALS := test demo bench bench-loader check-oclgrind test-asan
ifneq ($(if $(CLTRAIN_DEPS_READY),,$(filter $(DEPS_GOALS),$(MAKECMDGOALS))),)
.PHONY: $(MAKECMDGOALS)
$(firstword $(MAKECMDGOALS)):
	@sh tools/install-deps.sh
	@$(MAKE) --no-print-directory CLTRAIN_DEPS_READY=1 $(MAKECMDGOALS)
$(filter-out $(firstword $(MAKECMDGOALS)),$(MAKECMDGOALS)):
	@:
else
CC       ?= cc
PKGS     := OpenCL clblast libzip zlib libjpeg libpng
CFLAGS   ?= -O2
CFLAGS   += -std=c11 -Wall -Wextra $(if $(CI),-Werror) $(EXTRA_CFLAGS) -I. -Ibuild \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
# MPI (Open MPI's mpicc wrapper flags) for data-parallel runs over processes: on when mpicc is
# found; `make MPI=0` builds the single-process binary (host/train/comm.c without MPI).
MPI      ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
CFLAGS   += -DCLTRAIN_MPI $(shell mpicc --showme:compile)
LDLIBS   += $(shell mpicc --showme:link)
endif
PREFIX   ?= /usr/local
BUILD    ?= build
PYTHON   ?= /usr/bin/python3

CL_SRC   := $(sort $(wildcard cl/*.cl))

# Every object depends on $(BUILD)/.flags, rewritten only when the compiler, its flags or the
# libraries change (MPI on or off, CFLAGS, CI's -Werror), so a change of configuration
# rebuilds what it affects. Its recipe also stops a build that lacks the packages.
BUILD_FLAGS := $(CC) $(CFLAGS) $(LDLIBS)
$(BUILD)/.flags: FORCE
	@pkg-config --exists $(PKGS) || { echo "cltrain: the build needs the packages of" \
	    "tools/install-deps.sh (pkg-config finds no $(PKGS)): run 'make deps'" >&2; exit 1; }
	@mkdir -p $(BUILD)
	@printf '%s\n' '$(BUILD_FLAGS)' | cmp -s - $@ || printf '%s\n' '$(BUILD_FLAGS)' > $@
FORCE:

# One static library per layer (DESIGN.md; tools/check-layers.sh checks the include directions),
# listed from the top down: the linker takes each library's needs from the ones after it.
LAYERS      := cli train tune model ops runtime dataset common
SRC_cli     := $(filter-out host/cli/main.c,$(sort $(wildcard host/cli/*.c)))
SRC_train   := $(sort $(wildcard host/train/*.c))
SRC_tune    := $(sort $(wildcard host/tune/*.c))
SRC_model   := $(sort $(wildcard model/*.c))
SRC_ops     := $(sort $(wildcard host/ops/*.c))
SRC_runtime := $(sort $(wildcard host/runtime/*.c))
SRC_dataset := $(sort $(wildcard dataset/*.c))
SRC_common  := $(sort $(wildcard common/*.c))
# Generated sources: the kernels of cl/ and the shipped tune/*.tune files, embedded.
GEN_runtime := $(BUILD)/cl_sources.o
GEN_tune    := $(BUILD)/tune_files.o
LIB_SRC  := $(foreach l,$(LAYERS),$(SRC_$(l)))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIBS     := $(LAYERS:%=$(BUILD)/lib/libcltrain_%.a)
MAIN_OBJ := $(BUILD)/host/cli/main.o
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPS     := $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(MAIN_OBJ:.o=.d)

.PHONY: all debug test demo install deps clean check-cl check-layers check-oclgrind bench gen-fixtures \
        bench-loader

all: cltrain

cltrain: $(MAIN_OBJ) $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

define layer_lib
$(BUILD)/lib/libcltrain_$(1).a: $(SRC_$(1):%.c=$(BUILD)/%.o) $(GEN_$(1))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_lib,$(l))))

$(BUILD)/cl_sources.c: $(CL_SRC) tools/embed_cl.sh
	@mkdir -p $(BUILD)
	sh tools/embed_cl.sh $@ $(CL_SRC)

$(BUILD)/cl_sources.o: $(BUILD)/cl_sources.c $(BUILD)/.flags
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/cltrain_tests: $(TEST_OBJ) $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# The PyTorch fixtures of the deeper ResNets (too large to commit: resnet50's weights alone
# are 100 MB, the files a few MB), written at test time from the same weight generator.
GEN_FIXTURES := $(BUILD)/fixtures/resnet34_32x8.bin $(BUILD)/fixtures/resnet50_32x8.bin \
                $(BUILD)/fixtures/resnet101_32x2.bin $(BUILD)/fixtures/resnet152_32x2.bin
gen-fixtures: $(GEN_FIXTURES)
$(BUILD)/fixtures/%_32x8.bin: tools/make_fixtures.py
	$(PYTHON) tools/make_fixtures.py --arch $* --batch 8 --out $(BUILD)/fixtures
$(BUILD)/fixtures/%_32x2.bin: tools/make_fixtures.py
	$(PYTHON) tools/make_fixtures.py --arch $* --batch 2 --eval-only --out $(BUILD)/fixtures

# Tests run on pocl's CPU device unless CLTRAIN_DEVICE says otherwise: the Criterion suite,
# then the PyTorch parity runs (python3-torch; files cross both ways; image folders).
test: deps cltrain $(BUILD)/tests/cltrain_tests $(GEN_FIXTURES)
	sh tools/check-layers.sh
	sh tools/check-build-config.sh
	sh tools/check-cl.sh
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} PYTHON=$(PYTHON) sh tools/check-bitwise.sh
	CLTRAIN_GEN_FIXTURES=$(BUILD)/fixtures CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(BUILD)/tests/cltrain_tests --jobs $${TEST_JOBS:-2} $(TEST_ARGS)
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_parity.py --cltrain ./cltrain --bn-eval
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_parity.py --cltrain ./cltrain \
	    --steps 3 --lr 0.001 --eval-size 64
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_parity.py --cltrain ./cltrain \
	    --arch resnet34 --steps 3 --bn-eval --lr 0.1 --eval-size 64
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_parity.py --cltrain ./cltrain \
	    --arch resnet50 --steps 3 --bn-eval --lr 0.1 --eval-size 64 --format safetensors
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_grad_sweep.py --cltrain ./cltrain \
	    --arch resnet18 --batch-sizes 2,3,7,12,16,33
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_grad_sweep.py --cltrain ./cltrain \
	    --arch resnet50 --batch-sizes 2,5,16
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_folder_parity.py --cltrain ./cltrain
	$(if $(filter 1,$(MPI)),CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_ddp_parity.py --cltrain ./cltrain --bn-eval --lr 0.01)
	$(if $(filter 1,$(MPI)),CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_ddp_parity.py --cltrain ./cltrain --steps 1)
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} sh tools/check-mpi-sigint.sh ./cltrain
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_predict_parity.py --cltrain ./cltrain
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_schedule_parity.py --cltrain ./cltrain
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(PYTHON) tools/torch_optim_parity.py --cltrain ./cltrain
	sh tools/device-check.sh --device $${CLTRAIN_DEVICE:-cpu} --bench-shapes 32x16

# build-debug/cltrain: -O0 -g with ASan + UBSan. (CFLAGS goes to the sub-make through the
# environment: on its command line it would replace every CFLAGS += above, -I. included.)
debug:
	CFLAGS="-O0 -g" $(MAKE) BUILD=build-debug \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" build-debug/cltrain

demo: deps cltrain
	sh tools/demo.sh

deps:
	@sh tools/install-deps.sh

# cltrain bench next to PyTorch on the same shapes, with the machine's SGEMM limit.
bench: deps cltrain
	$(PYTHON) tools/bench_torch.py --cltrain ./cltrain $(if $(CLTRAIN_DEVICE),--device $(CLTRAIN_DEVICE)) $(BENCH_ARGS)

# The image-folder loader's images/s next to torchvision's DataLoader on the same JPEGs.
$(BUILD)/bench/loader_bench: tests/bench/loader_bench.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

bench-loader: deps $(BUILD)/bench/loader_bench
	$(PYTHON) tools/bench_loader.py --bin $(BUILD)/bench/loader_bench $(BENCH_ARGS)

# Includes only point down the layers (cli -> train -> model -> ops -> runtime -> common, ...).
check-layers:
	sh tools/check-layers.sh

# Every kernel through clang's OpenCL front end in strict OpenCL C 1.2, no extensions; then
# the whole program through pocl as cltrain builds it, failing on any build-log warning.
check-cl: cltrain
	sh tools/check-cl.sh
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} PYTHON=$(PYTHON) sh tools/check-bitwise.sh

# Every kernel under Oclgrind (bounds, data races, barrier divergence, uninitialised values,
# API misuse) through the op tests' small shapes; fails on any report (tools/check-oclgrind.sh).
check-oclgrind: deps $(BUILD)/tests/cltrain_tests
	sh tools/check-oclgrind.sh $(BUILD)/tests/cltrain_tests

install: cltrain
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 cltrain $(DESTDIR)$(PREFIX)/bin/cltrain

clean:
	rm -rf build build-debug cltrain

-include $(DEPS)

# ---- hardening: fuzzing and the sanitizer run ----

# `make fuzz` builds the libFuzzer targets in tests/fuzz/ with clang (Debian's `clang`
# package) and runs each for FUZZ_SECONDS, starting from the seeds in tests/fuzz/corpus/<t>/;
# new inputs go to build-fuzz/corpus/<t>/, crashes to build-fuzz/crash-<t>-*. (CFLAGS goes to
# the sub-make through the environment: on its command line it would replace the -I flags.)
FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  := ckpt safetensors pickle cifar idx args image
FUZZ_SAN      := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=undefined

.PHONY: fuzz fuzz-build test-asan

fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null || { echo "fuzz: needs clang (apt-get install clang)" >&2; exit 1; }
	CFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) \
	    $(FUZZ_TARGETS:%=build-fuzz/fuzz/fuzz_%)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.c tests/fuzz/fuzz_util.h $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< tests/fuzz/fuzz_util.c $(LIBS) $(LDLIBS)

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p build-fuzz/corpus/$$t; \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    if ! build-fuzz/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -close_fd_mask=3 \
	        -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/crash-$$t- build-fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	        > build-fuzz/fuzz_$$t.log 2>&1; then \
	        tail -n 60 build-fuzz/fuzz_$$t.log; echo "fuzz_$$t: FAILED (log: build-fuzz/fuzz_$$t.log)"; exit 1; \
	    fi; \
	    grep -E '^#[0-9]+[[:space:]]+DONE' build-fuzz/fuzz_$$t.log | tail -n 1; \
	    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' build-fuzz/fuzz_$$t.log; \
	done

# `make test-asan`: the library, ./cltrain and the Criterion suite built with ASan + UBSan in
# build-asan/, the whole suite run on pocl (its kernels are not instrumented). Leaks and UB
# fail; tests/lsan.supp hides leaks inside pocl, the OpenCL ICD loader, CLBlast and LLVM only.
ASAN_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

$(BUILD)/cltrain: $(MAIN_OBJ) $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

test-asan: deps cltrain $(GEN_FIXTURES)
	CFLAGS="-O1 -g" $(MAKE) BUILD=build-asan EXTRA_CFLAGS="$(ASAN_SAN)" \
	    build-asan/cltrain build-asan/tests/cltrain_tests
	CLTRAIN_GEN_FIXTURES=$(BUILD)/fixtures CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} CLTRAIN_BIN=build-asan/cltrain \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    build-asan/tests/cltrain_tests --jobs $${TEST_JOBS:-2} $(TEST_ARGS)

# ---- GEMM tuning shipped in tune/*.tune, embedded into the binary (read by host/tune/tune.c) ----
TUNE_SRC := $(sort $(wildcard tune/*.tune))
$(BUILD)/tune_files.c: $(TUNE_SRC) tools/embed_cl.sh
	@mkdir -p $(BUILD)
	sh tools/embed_cl.sh $@.tmp $(TUNE_SRC) && sed 's/cl_source_/tune_file_/g' $@.tmp > $@ && rm -f $@.tmp
$(BUILD)/tune_files.o: $(BUILD)/tune_files.c $(BUILD)/.flags
	$(CC) $(CFLAGS) -c -o $@ $<

endif # the second pass of DEPS_GOALS (top of this file)
