# cltrain — see README.md. `make` builds ./cltrain; `make test` runs the Criterion suite on
# the pocl CPU device; `make demo` runs the main job on Fashion-MNIST.
CC       ?= cc
PKGS     := OpenCL clblast libzip zlib
CFLAGS   ?= -O2
CFLAGS   += -std=c11 -Wall -Wextra $(if $(CI),-Werror) $(EXTRA_CFLAGS) -I. -Ibuild \
            $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -lpthread -lm
PREFIX   ?= /usr/local
BUILD    ?= build
PYTHON   ?= /usr/bin/python3

CL_SRC   := $(sort $(wildcard cl/*.cl))
LIB_SRC  := $(filter-out host/main.c,$(sort $(wildcard host/*.c model/*.c dataset/*.c)))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/cl_sources.o
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPS     := $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/host/main.d

.PHONY: all debug test demo install deps clean check-cl

all: cltrain

cltrain: $(BUILD)/host/main.o $(BUILD)/libcltrain.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libcltrain.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/cl_sources.c: $(CL_SRC) tools/embed_cl.sh
	@mkdir -p $(BUILD)
	sh tools/embed_cl.sh $@ $(CL_SRC)

$(BUILD)/cl_sources.o: $(BUILD)/cl_sources.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/cltrain_tests: $(TEST_OBJ) $(BUILD)/libcltrain.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# Tests run on pocl's CPU device unless CLTRAIN_DEVICE says otherwise.
test: deps cltrain $(BUILD)/tests/cltrain_tests
	CLTRAIN_DEVICE=$${CLTRAIN_DEVICE:-cpu} $(BUILD)/tests/cltrain_tests --jobs $${TEST_JOBS:-2} $(TEST_ARGS)

debug:
	$(MAKE) BUILD=build-debug CFLAGS="-O0 -g" EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" cltrain

demo: deps cltrain
	sh tools/demo.sh

deps:
	@sh tools/install-deps.sh

install: cltrain
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 cltrain $(DESTDIR)$(PREFIX)/bin/cltrain

clean:
	rm -rf build build-debug cltrain

-include $(DEPS)
