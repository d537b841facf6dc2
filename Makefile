# keybroker build.  `make` builds bin/keybrokerd and bin/keybroker;
# `make check` runs unit and integration tests; `make asan` runs the same
# suite under AddressSanitizer and UndefinedBehaviorSanitizer.

CC       ?= cc
# Each binary links what it calls: the CLI needs no store, event loop or PKCS#11,
# keybrokerd libcurl only to fetch OIDC issuers' key sets, and p11-kit-1 only lends its
# PKCS#11 header
# (tests/check-elf.sh holds the binaries to this).  The tests and the
# benchmark are HTTP clients of keybrokerd as well: they link everything.
CLI_PKGS  = openssl jansson libcurl
D_PKGS    = openssl jansson libevent_core libevent_extra libevent_pthreads libevent_openssl \
            sqlite3 libcbor libcurl libpq
PKGS      = $(CLI_PKGS) $(D_PKGS) p11-kit-1
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(CLI_PKGS) $(D_PKGS))
CLI_LIBS   := $(shell pkg-config --libs $(CLI_PKGS))
D_LIBS     := $(shell pkg-config --libs $(D_PKGS)) -lpthread -ldl
# keybrokerd's allocator: jemalloc (MALLOC=libc: the C library's).  A signature allocates and
# frees some hundred small blocks across the event loop, the workers and the audit writer;
# glibc's malloc spent about a sixth of keybrokerd's CPU on them (bench/README.md).  Sanitizer
# builds keep their runtime's allocator, which is how they see the heap.
MALLOC    ?= jemalloc
D_MALLOC   = $(if $(strip $(SAN)),,$(if $(filter jemalloc,$(MALLOC)),-ljemalloc))
ifeq ($(strip $(PKG_LIBS)),)
$(error pkg-config found none of $(PKGS): run contrib/install-deps.sh)
endif

BUILD    ?= build
BIN      ?= bin
SAN      ?=
OPT      ?= -O2
WARN      = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wundef

# Hardening, on in every build (HARDEN= turns it off).  Options the compiler
# does not take are left out: -fcf-protection exists on x86 only, and clang 14
# takes -ftrivial-auto-var-init=zero only with its "will be removed" switch.
# _FORTIFY_SOURCE needs the optimizer, and sanitizer builds go without it:
# the __*_chk functions it calls are not intercepted, so ASan would no longer
# see those calls.
cc_takes  = $(shell $(CC) -Werror $(1) -x c -c -o /dev/null /dev/null >/dev/null 2>&1 && echo '$(1)')
AUTO_INIT := $(or $(call cc_takes,-ftrivial-auto-var-init=zero),$(call cc_takes,\
              -ftrivial-auto-var-init=zero \
              -enable-trivial-auto-var-init-zero-knowing-it-will-be-removed-from-clang))
CF_PROT   := $(call cc_takes,-fcf-protection)
FORTIFY   = $(if $(strip $(SAN))$(filter -O0,$(OPT))$(if $(strip $(OPT)),,none),,\
              -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3)
HARDEN   ?= yes
HARDEN_CC = $(FORTIFY) -fstack-protector-strong -fstack-clash-protection $(CF_PROT) \
            $(AUTO_INIT) -fPIE
# -pie is for executables; the PKCS#11 test module filters it out.
HARDEN_LD = -pie -Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack
HARDEN_CFLAGS  = $(if $(HARDEN),$(HARDEN_CC))
HARDEN_LDFLAGS = $(if $(HARDEN),$(HARDEN_LD))

CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN) $(HARDEN_CFLAGS) \
            -fno-omit-frame-pointer -Iinclude $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(SAN) $(HARDEN_LDFLAGS) -Wl,--as-needed
LDLIBS   += $(PKG_LIBS) -lpthread -ldl

# Objects and binaries depend on $(FLAGS_FILE), which changes when the compile
# or link flags do (a new Makefile, HARDEN=, another OPT in the same folder),
# so they are rebuilt then.  `make -n` does not write it.
FLAGS_FILE := $(BUILD)/.flags
FLAGS_NOW  := $(strip $(CC) $(CFLAGS) $(LDFLAGS) $(D_MALLOC))
ifneq ($(FLAGS_NOW),$(strip $(shell cat $(FLAGS_FILE) 2>/dev/null)))
.PHONY: $(FLAGS_FILE)
endif

# libkbr_core: what any client needs (encoders, errors, secrets, the offline log verifiers);
# libkbr: the broker's modules on top of it.
CORE_SRC  = $(wildcard common/*.c) audit/chain.c audit/merkle.c audit/checkpoint.c audit/note.c audit/bundle.c
CORE_OBJ  = $(CORE_SRC:%.c=$(BUILD)/%.o)
CORE      = $(BUILD)/libkbr_core.a
LIB_SRC   = $(filter-out $(CORE_SRC),$(wildcard pkcs11/*.c policy/*.c audit/*.c store/*.c ca/*.c \
            cose/*.c))
# The store's schema is SQL files, built in as C strings (kbr_sql_v1, ...).
SQL_SRC   = $(wildcard store/sql/*.sql store/pg/*.sql)
SQL_OBJ   = $(BUILD)/store/sql.o
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/%.o) $(SQL_OBJ)
SERVER_LIB = $(BUILD)/libkbr.a
LIB       = $(SERVER_LIB) $(CORE)
# libkbrd: keybrokerd's sources but keybrokerd.c; libkbr_cli: the CLI's sources but
# keybroker.c.  The binaries and the tests of those sources link the same archives.
D_MAIN    = $(BUILD)/broker/daemon/keybrokerd.o
D_SRC     = $(filter-out broker/daemon/keybrokerd.c,$(wildcard broker/daemon/*.c))
D_OBJ     = $(D_SRC:%.c=$(BUILD)/%.o)
DAEMON_A  = $(BUILD)/libkbrd.a
CLI_MAIN  = $(BUILD)/broker/cli/keybroker.o
CLI_SRC   = $(filter-out broker/cli/keybroker.c,$(wildcard broker/cli/*.c))
CLI_OBJ   = $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI_A     = $(BUILD)/libkbr_cli.a

UNIT_SRC  = $(wildcard tests/unit/test_*.c)
# tests/common/: what unit and integration tests share (a test OIDC issuer)
TEST_COMMON_SRC = $(wildcard tests/common/*.c)
UNIT_LIB_SRC = $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c)) $(TEST_COMMON_SRC)
UNIT_LIB_OBJ = $(UNIT_LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
IT_SRC    = $(wildcard tests/integration/test_*.c)
IT_BIN    = $(IT_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
IT_LIB_SRC = $(filter-out $(IT_SRC),$(wildcard tests/integration/*.c)) $(TEST_COMMON_SRC)
IT_LIB_OBJ = $(IT_LIB_SRC:%.c=$(BUILD)/%.o)
FAULTY_SO = $(BUILD)/tests/libkbr-faulty-pkcs11.so
# bench/ (bench/README.md): the signing benchmark, and the store generator
# behind the views' timings.
BENCH_BIN = $(BUILD)/bench/bench_sign
VIEWS_BENCH = $(BUILD)/bench/gen_store

# One libFuzzer target per parser (tests/fuzz/README.md).  `check` replays
# each committed corpus with a replay binary built by $(CC); `fuzz` builds
# the targets with clang and runs each for FUZZ_SECONDS.
FUZZ_SRC  = $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_NAMES = $(FUZZ_SRC:tests/fuzz/%_fuzz.c=%)
FUZZ_REPLAY = $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%_replay)
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz
FUZZ_CC   ?= clang

.PHONY: all check unit integration asan tsan clang lint bench bench-instructions clean demo tests fuzz fuzz-bins \
        fuzz-smoke views-bench
all: $(BIN)/keybrokerd $(BIN)/keybroker

$(FLAGS_FILE):
	@mkdir -p $(dir $@)
	@echo '$(FLAGS_NOW)' > $@

$(BUILD)/%.o: %.c $(FLAGS_FILE)
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

$(DAEMON_A): $(D_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CLI_A): $(CLI_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/keybrokerd: $(D_MAIN) $(DAEMON_A) $(LIB) $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(D_MAIN) $(DAEMON_A) $(LIB) $(D_LIBS) $(D_MALLOC)

$(BIN)/keybroker: $(CLI_MAIN) $(CLI_A) $(CORE) $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CLI_MAIN) $(CLI_A) $(CORE) $(CLI_LIBS)

# Tests of the daemon's or the CLI's own sources link its archive too (listed
# below); PROG_A picks it out of the prerequisites.
PROG_A = $(filter $(DAEMON_A) $(CLI_A),$^)
$(BUILD)/tests/unit/test_cli: $(CLI_A)
$(BUILD)/tests/unit/test_config: $(DAEMON_A)
$(BUILD)/tests/unit/test_routes: $(DAEMON_A)
$(BUILD)/tests/unit/test_sandbox $(BUILD)/tests/unit/test_arecord: $(DAEMON_A)
$(BUILD)/tests/unit/test_http_input: $(DAEMON_A)
$(BUILD)/tests/fuzz/head_fuzz $(BUILD)/tests/fuzz/head_replay: $(DAEMON_A)
$(BUILD)/tests/fuzz/config_fuzz $(BUILD)/tests/fuzz/config_replay: $(DAEMON_A)
$(BUILD)/tests/fuzz/request_fuzz $(BUILD)/tests/fuzz/request_replay: $(DAEMON_A)

# Unit tests read the vectors they check against from tests/unit/data/.
$(BUILD)/tests/unit/%.o: CFLAGS += -DKBR_UNIT_DATA='"$(CURDIR)/tests/unit/data"'
# test_cra checks the CSAF documents with tests/csaf/validate.mjs (tests/csaf/install.sh).
$(BUILD)/tests/integration/test_cra.o: CFLAGS += -DKBR_CSAF_DIR='"$(CURDIR)/tests/csaf"'

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(UNIT_LIB_OBJ) $(LIB) $(FLAGS_FILE)
	$(CC) $(LDFLAGS) -o $@ $< $(UNIT_LIB_OBJ) $(PROG_A) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(IT_LIB_OBJ) $(LIB) $(FLAGS_FILE)
	$(CC) $(LDFLAGS) -o $@ $< $(IT_LIB_OBJ) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(IT_LIB_OBJ) $(LIB) $(FLAGS_FILE)
	$(CC) $(LDFLAGS) -o $@ $< $(IT_LIB_OBJ) $(LIB) $(LDLIBS) -lcmocka

# The replay main() learns its corpus directory at compile time.
$(BUILD)/tests/fuzz/%_replay.o: tests/fuzz/replay.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DKBR_FUZZ_CORPUS='"$(CURDIR)/tests/fuzz/corpus/$*"' -c -o $@ $<

$(BUILD)/tests/fuzz/%_replay: $(BUILD)/tests/fuzz/%_replay.o $(BUILD)/tests/fuzz/%_fuzz.o $(LIB) \
                             $(FLAGS_FILE)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(PROG_A) $(LIB) $(LDLIBS)

$(BUILD)/tests/fuzz/%_fuzz: $(BUILD)/tests/fuzz/%_fuzz.o $(LIB) $(FLAGS_FILE)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(PROG_A) $(LIB) $(LDLIBS)

# Objects made on the way to a test binary are kept, so a rebuild recompiles
# only what changed.
.SECONDARY:

# A PKCS#11 module that forwards to SoftHSM2 and fails on command (fault tests).
$(FAULTY_SO): tests/faulty-pkcs11/faulty.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $< $(filter-out -pie,$(LDFLAGS)) -ldl

TEST_ENV = KBR_BIN_DIR=$(abspath $(BIN)) KBR_FAULTY_SO=$(abspath $(FAULTY_SO))
# tests/check-elf.sh: the libraries each binary needs and the hardening it got.
ELF_ENV  = $(TEST_ENV) KBR_BUILD_DIR=$(abspath $(BUILD)) KBR_HARDEN=$(HARDEN) \
           KBR_JEMALLOC=$(if $(D_MALLOC),1) \
           KBR_FORTIFY=$(if $(HARDEN),$(if $(FORTIFY),1)) KBR_CET=$(if $(HARDEN),$(if $(CF_PROT),1))

tests: all $(UNIT_BIN) $(IT_BIN) $(FAULTY_SO) $(FUZZ_REPLAY)

# The store's unit tests (every test_store_*) and the integration tests run twice: on SQLite,
# then on PostgreSQL (tests/pg-tests.sh starts a private cluster for them); test_shared runs two
# brokers on one PostgreSQL store and skips on SQLite.
PG_UNIT_BIN = $(filter $(BUILD)/tests/unit/test_store_%,$(UNIT_BIN)) \
              $(addprefix $(BUILD)/tests/unit/,test_audit test_merkle)
PG_TEST_ENV = PG_TESTS="$(PG_UNIT_BIN) $(IT_BIN)"

check: tests
	$(ELF_ENV) $(PG_TEST_ENV) tests/run-tests.sh tests/check-elf.sh $(UNIT_BIN) $(IT_BIN) \
	  $(FUZZ_REPLAY) tests/pg-tests.sh

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

# The same build and suite with clang, under the same -Werror flags.
CLANG ?= clang
clang:
	$(MAKE) BUILD=build-clang BIN=build-clang/bin CC=$(CLANG) check

# ThreadSanitizer over the same suite.  Every process (tests, keybrokerd, the
# CLI) writes its reports under $(TSAN_LOGS), so a race in a daemon that a
# test killed is reported too; tests/tsan-reports.sh prints them and fails if
# there are any.  tests/tsan.supp says why each of its entries is excused.
TSAN_LOGS = $(CURDIR)/build-tsan/reports
tsan:
	rm -rf $(TSAN_LOGS) && mkdir -p $(TSAN_LOGS)
	TSAN_OPTIONS=suppressions=$(CURDIR)/tests/tsan.supp:log_path=$(TSAN_LOGS)/tsan:second_deadlock_stack=1 \
	  $(MAKE) BUILD=build-tsan BIN=build-tsan/bin OPT=-O1 SAN=-fsanitize=thread check; \
	  rc=$$?; tests/tsan-reports.sh $(TSAN_LOGS) || rc=1; exit $$rc

# Needs only the daemon: the benchmark drives it over HTTP.
bench: $(BIN)/keybrokerd $(BENCH_BIN)
	KBR_BIN_DIR=$(abspath $(BIN)) bench/with-pg.sh $(BUILD)/bench/bench_sign $(BENCH_ARGS)

# Instructions per signature under callgrind: steady on a busy machine (bench/README.md).
bench-instructions: $(BIN)/keybrokerd $(BIN)/keybroker $(BENCH_BIN)
	BUILD=$(BUILD) bench/instructions.sh $(BIN)

demo: all
	contrib/demo.sh

# The library is built again with coverage instrumentation, so the fuzzer
# sees the parsers' branches and not only the target's.
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" fuzz-bins
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BUILD)/tests/fuzz $(FUZZ_NAMES)

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%_fuzz)

# What CI affords: every target, FUZZ_SMOKE_SECONDS each.
FUZZ_SMOKE_SECONDS ?= 30
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

FMT_SRC = $(wildcard include/*.h common/*.c pkcs11/*.[ch] policy/*.[ch] audit/*.[ch] store/*.[ch] ca/*.[ch] cose/*.[ch] broker/*/*.[ch] \
            tests/*/*.c tests/*/*.h bench/*.c)
lint:
	clang-format --dry-run --Werror $(FMT_SRC)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	  --suppress=missingIncludeSystem -D__GNUC__ -D__CPPCHECK__ -Iinclude common pkcs11 policy audit store ca cose broker
	tests/grep-mistakes.sh

clean:
	rm -rf build build-asan build-tsan build-clang $(FUZZ_BUILD) bin

-include $(CORE_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(D_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(D_MAIN:.o=.d) \
         $(CLI_MAIN:.o=.d)
-include $(wildcard $(BUILD)/tests/*/*.d $(BUILD)/bench/*.d)

# bench/gen_store: a store of a million devices and the custody views timed on it
# (bench/views.md).  Not part of check: it takes minutes and gigabytes.
VIEWS_DB ?= /tmp/kbr-views-bench.db
$(VIEWS_BENCH): $(VIEWS_BENCH).o $(LIB) $(FLAGS_FILE)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

views-bench: $(VIEWS_BENCH)
	rm -f $(VIEWS_DB) $(VIEWS_DB)-wal $(VIEWS_DB)-shm
	$(VIEWS_BENCH) $(VIEWS_DB) $(VIEWS_BENCH_ARGS)

# ---- installing and packaging ----
# `make install` (PREFIX, DESTDIR, and the directories below) installs both binaries, their
# man pages, the systemd unit (with this layout's paths), the Prometheus rules, the docs, and
# the sample configuration, as SYSCONFDIR/keybroker/keybroker.conf.sample and, unless one is
# there already, as keybroker.conf.  `make deb` builds the Debian packages keybrokerd and
# keybroker (the client alone) from a copy of the tree, in DEB_DIR.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
SBINDIR        ?= $(PREFIX)/sbin
DATADIR        ?= $(PREFIX)/share
MANDIR         ?= $(DATADIR)/man
DOCDIR         ?= $(DATADIR)/doc/keybroker
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL        ?= install
DEB_DIR        ?= $(BUILD)/deb
# yes: install keybroker.conf even when one is there (the package's conffile)
KBR_INSTALL_CONF ?=

# The log's unit test links the daemon's archive, as test_config does.
$(BUILD)/tests/unit/test_log: $(DAEMON_A)

.PHONY: install install-daemon install-cli deb
install: install-daemon install-cli

install-cli: $(BIN)/keybroker
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 0755 $(BIN)/keybroker $(DESTDIR)$(BINDIR)/keybroker
	$(INSTALL) -m 0644 docs/man/keybroker.1 $(DESTDIR)$(MANDIR)/man1/keybroker.1

install-daemon: $(BIN)/keybrokerd
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/keybroker $(DESTDIR)$(DATADIR)/keybroker/prometheus $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0755 $(BIN)/keybrokerd $(DESTDIR)$(SBINDIR)/keybrokerd
	$(INSTALL) -m 0644 docs/man/keybrokerd.8 $(DESTDIR)$(MANDIR)/man8/keybrokerd.8
	sed -e 's|/usr/sbin/keybrokerd|$(SBINDIR)/keybrokerd|' -e 's|/etc/keybroker/|$(SYSCONFDIR)/keybroker/|' \
	  contrib/systemd/keybrokerd.service > $(DESTDIR)$(SYSTEMDUNITDIR)/keybrokerd.service.tmp
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/keybrokerd.service.tmp
	mv $(DESTDIR)$(SYSTEMDUNITDIR)/keybrokerd.service.tmp $(DESTDIR)$(SYSTEMDUNITDIR)/keybrokerd.service
	$(INSTALL) -m 0644 contrib/keybroker.conf.sample $(DESTDIR)$(SYSCONFDIR)/keybroker/keybroker.conf.sample
	if [ -n "$(KBR_INSTALL_CONF)" ] || [ ! -e $(DESTDIR)$(SYSCONFDIR)/keybroker/keybroker.conf ]; then \
	  $(INSTALL) -m 0644 contrib/keybroker.conf.sample $(DESTDIR)$(SYSCONFDIR)/keybroker/keybroker.conf; fi
	$(INSTALL) -m 0644 contrib/prometheus/keybroker-alerts.yml contrib/prometheus/keybroker-alerts.test.yml \
	  $(DESTDIR)$(DATADIR)/keybroker/prometheus/
	$(INSTALL) -m 0644 README.md THREAT_MODEL.md docs/operations.md docs/api.md docs/architecture.md \
	  $(DESTDIR)$(DOCDIR)/

# The tree without build products or git, built by dpkg-buildpackage in a directory of its own,
# so that `debian/rules clean` never touches this one.  Variables given to this make (a
# sanitizer build's SAN, BUILD...) do not reach the package's.
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/keybroker
	tar -c --exclude=./.git --exclude='./build*' --exclude=./bin --exclude='./debian/.debhelper' . \
	  | tar -x -C $(DEB_DIR)/keybroker
	cd $(DEB_DIR)/keybroker && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
	  dpkg-buildpackage -b -uc -us -j2 >../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	@ls -1 $(DEB_DIR)/*.deb
