# keybroker build.  `make` builds bin/keybrokerd and bin/keybroker;
# `make check` runs unit and integration tests; `make asan` runs the same
# suite under AddressSanitizer and UndefinedBehaviorSanitizer.

CC       ?= cc
# Each binary links what it calls: the CLI needs no store, event loop or PKCS#11.
CLI_PKGS  = openssl jansson libcurl
PKGS      = $(CLI_PKGS) libevent_core libevent_extra libevent_pthreads libevent_openssl \
            sqlite3 p11-kit-1 libcbor
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CLI_LIBS   := $(shell pkg-config --libs $(CLI_PKGS))
ifeq ($(strip $(PKG_LIBS)),)
$(error pkg-config found none of $(PKGS): run contrib/install-deps.sh)
endif

BUILD    ?= build
BIN      ?= bin
SAN      ?=
OPT      ?= -O2
WARN      = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN) -fno-omit-frame-pointer \
            -Iinclude $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(SAN)
LDLIBS   += $(PKG_LIBS) -lpthread -ldl

# libkbr_core: what any client needs (encoders, errors, secrets, the offline log verifiers);
# libkbr: the broker's modules on top of it.
CORE_SRC  = $(wildcard common/*.c) audit/chain.c audit/merkle.c audit/checkpoint.c audit/note.c
CORE_OBJ  = $(CORE_SRC:%.c=$(BUILD)/%.o)
CORE      = $(BUILD)/libkbr_core.a
LIB_SRC   = $(filter-out $(CORE_SRC),$(wildcard pkcs11/*.c policy/*.c audit/*.c store/*.c ca/*.c \
            cose/*.c))
# The store's schema is SQL files, built in as C strings (kbr_sql_v1, ...).
SQL_SRC   = $(wildcard store/sql/*.sql)
SQL_OBJ   = $(BUILD)/store/sql.o
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/%.o) $(SQL_OBJ)
SERVER_LIB = $(BUILD)/libkbr.a
LIB       = $(SERVER_LIB) $(CORE)
D_SRC     = $(wildcard broker/daemon/*.c)
D_OBJ     = $(D_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   = $(wildcard broker/cli/*.c)
CLI_OBJ   = $(CLI_SRC:%.c=$(BUILD)/%.o)

UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_LIB_SRC = $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
UNIT_LIB_OBJ = $(UNIT_LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
IT_SRC    = $(wildcard tests/integration/test_*.c)
IT_BIN    = $(IT_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
IT_LIB_SRC = $(filter-out $(IT_SRC),$(wildcard tests/integration/*.c))
IT_LIB_OBJ = $(IT_LIB_SRC:%.c=$(BUILD)/%.o)
FAULTY_SO = $(BUILD)/tests/libkbr-faulty-pkcs11.so
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# One libFuzzer target per parser (tests/fuzz/README.md).  `check` replays
# each committed corpus with a replay binary built by $(CC); `fuzz` builds
# the targets with clang and runs each for FUZZ_SECONDS.
FUZZ_SRC  = $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_NAMES = $(FUZZ_SRC:tests/fuzz/%_fuzz.c=%)
FUZZ_REPLAY = $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%_replay)
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz
FUZZ_CC   ?= clang

.PHONY: all check unit integration asan lint bench clean demo tests fuzz fuzz-bins
all: $(BIN)/keybrokerd $(BIN)/keybroker

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Each file becomes `const char kbr_sql_<name>[]`, one C string line per SQL line.
$(BUILD)/store/sql.c: $(SQL_SRC) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from store/sql/ by the Makefile: edit the .sql files. */'; \
	  for f in $(SQL_SRC); do \
	    n=$$(basename $$f .sql); \
	    echo "extern const char kbr_sql_$$n[];"; \
	    echo "const char kbr_sql_$$n[] ="; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $$f; \
	    echo '    "";'; \
	  done; } > $@.tmp && mv $@.tmp $@

$(SQL_OBJ): $(BUILD)/store/sql.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(SERVER_LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CORE): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/keybrokerd: $(D_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(D_OBJ) $(LIB) $(LDLIBS)

$(BIN)/keybroker: $(CLI_OBJ) $(CORE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(CORE) $(CLI_LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(UNIT_LIB_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(UNIT_LIB_OBJ) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(IT_LIB_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(IT_LIB_OBJ) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(IT_LIB_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(IT_LIB_OBJ) $(LIB) $(LDLIBS) -lcmocka

# The replay main() learns its corpus directory at compile time.
$(BUILD)/tests/fuzz/%_replay.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DKBR_FUZZ_CORPUS='"$(CURDIR)/tests/fuzz/corpus/$*"' -c -o $@ $<

$(BUILD)/tests/fuzz/%_replay: $(BUILD)/tests/fuzz/%_replay.o $(BUILD)/tests/fuzz/%_fuzz.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/fuzz/%_fuzz: $(BUILD)/tests/fuzz/%_fuzz.o $(LIB)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

.SECONDARY: $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%_fuzz.o) $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%_replay.o)

# A PKCS#11 module that forwards to SoftHSM2 and fails on command (fault tests).
$(FAULTY_SO): tests/faulty-pkcs11/faulty.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $< $(LDFLAGS) -ldl

TEST_ENV = KBR_BIN_DIR=$(abspath $(BIN)) KBR_FAULTY_SO=$(abspath $(FAULTY_SO))

tests: all $(UNIT_BIN) $(IT_BIN) $(FAULTY_SO) $(FUZZ_REPLAY)

check: tests
	$(TEST_ENV) tests/run-tests.sh $(UNIT_BIN) $(IT_BIN) $(FUZZ_REPLAY)

unit: $(UNIT_BIN)
	tests/run-tests.sh $(UNIT_BIN)

integration: all $(IT_BIN) $(FAULTY_SO)
	$(TEST_ENV) tests/run-tests.sh $(IT_BIN)

# SoftHSM2 2.6.1 leaks inside its own C_SignInit for EdDSA keys; only leaks
# allocated under the module are excused (tests/lsan.supp).
SAN_ENV = ASAN_OPTIONS=fast_unwind_on_malloc=0:detect_leaks=1:abort_on_error=0 \
          LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
asan:
	$(SAN_ENV) $(MAKE) BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" check

# Needs only the daemon: the benchmark drives it over HTTP.
bench: $(BIN)/keybrokerd $(BENCH_BIN)
	KBR_BIN_DIR=$(abspath $(BIN)) $(BUILD)/bench/bench_sign $(BENCH_ARGS)

demo: all
	contrib/demo.sh

# The library is built again with coverage instrumentation, so the fuzzer
# sees the parsers' branches and not only the target's.
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" fuzz-bins
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BUILD)/tests/fuzz $(FUZZ_NAMES)

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%_fuzz)

FMT_SRC = $(wildcard include/*.h common/*.c pkcs11/*.[ch] policy/*.[ch] audit/*.[ch] store/*.[ch] ca/*.[ch] cose/*.[ch] broker/*/*.[ch] \
            tests/*/*.c tests/*/*.h bench/*.c)
lint:
	clang-format --dry-run --Werror $(FMT_SRC)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	  --suppress=missingIncludeSystem -D__GNUC__ -Iinclude common pkcs11 policy audit store ca cose broker
	tests/grep-mistakes.sh

clean:
	rm -rf build build-asan bin

-include $(CORE_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(D_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
# tests/unit/test_cli.c includes the CLI's sources: it is rebuilt when they change.
-include $(wildcard $(BUILD)/tests/fuzz/*.d $(BUILD)/tests/unit/*.d $(BUILD)/tests/integration/*.d \
    $(BUILD)/tests/bench/*.d $(BUILD)/bench/*.d)

# tests/bench/gen_store: a store of a million devices and the custody views timed on it
# (tests/bench/README.md).  Not part of check: it takes minutes and gigabytes.
VIEWS_DB ?= /tmp/kbr-views-bench.db
$(BUILD)/tests/bench/%.o: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Istore -c -o $@ $<

$(BUILD)/tests/bench/gen_store: $(BUILD)/tests/bench/gen_store.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

views-bench: $(BUILD)/tests/bench/gen_store
	rm -f $(VIEWS_DB) $(VIEWS_DB)-wal $(VIEWS_DB)-shm
	$(BUILD)/tests/bench/gen_store $(VIEWS_DB) $(VIEWS_BENCH_ARGS)
