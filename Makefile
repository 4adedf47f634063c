# temporal-lua: a Temporal client for Lua 5.4 on the gRPC C core and protobuf-c.
# make            build build/temporal/core.so and build/temporal-lua
# make test       install what is missing, start the real test bed, run the specs
# make demo       start a dev server and the sample worker, run examples/ with temporal-lua
# make deps       install the Debian packages (as root), or print the command
# make LUA=luajit build/luajit/temporal/core.so: the same core for LuaJIT 2.1 (OpenResty's
#                 branch, what nginx's Lua module links); `make LUA=luajit install` too

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    := build
LUA_VER  := 5.4
# The Lua that runs the build tools (tools/embed.lua), whichever flavour is built.
TOOL_LUA := lua5.4
# The Lua flavour the core is built for: LUA=luajit (or a path to a luajit binary, as LuaRocks
# passes it) builds against LuaJIT's headers through src/compat.h into build/luajit/.
LUA      ?= lua5.4
ifneq ($(findstring luajit,$(notdir $(LUA))),)
FLAVOUR  := luajit
LUA_VER  := 5.1
LUA_INCDIR ?= /usr/include/luajit-2.1
# compat-5.3.h (Debian lua-compat53-dev): the 5.3 C API on 5.1/LuaJIT, used by src/compat.h
COMPAT53_INCDIR ?= /usr/include/lua5.1
OUT      := $(BUILD)/luajit
else
FLAVOUR  := lua54
OUT      := $(BUILD)
endif
# PROTO_DIR: a Temporal API checkout (holding temporal/api/...). Default: the pinned package.
PROTO_PKG := $(BUILD)/proto
PROTO_DIR ?= $(PROTO_PKG)/api_upstream
PROTO_EXTRA_DIR ?= $(PROTO_PKG)
GEN      := $(BUILD)/gen

DEBIAN_PKGS := lua5.4 liblua5.4-dev libgrpc-dev libprotobuf-c-dev protobuf-c-compiler \
  protobuf-compiler libprotobuf-dev lua-cjson libssl-dev lua-busted libreadline-dev \
  pkg-config openssl valgrind gnuplot-nox nginx tinyproxy
DEBIAN_PKGS += lua-check  # luacheck: spec/luacheck_spec.lua lints every Lua tree
DEBIAN_PKGS += luarocks  # spec/luarocks_spec.lua installs the rock into a fresh tree
DEBIAN_PKGS += luajit2 libluajit2-5.1-dev lua-compat53-dev  # make LUA=luajit: OpenResty's LuaJIT, its headers, compat-5.3
DEBIAN_PKGS += libnginx-mod-http-lua lua-resty-core  # the nginx host (spec/nginx_spec.lua, examples/openresty)
DEBIAN_PKGS += lua-luaossl lua-http lua-cqueues  # examples/encryption: AES-GCM codec and its HTTP codec server
DEBIAN_PKGS += lua-cqueues lua-luv  # the hosts specs: calls from cqueues and luv coroutines (spec/hosts_*)
# Tools a machine may already have from elsewhere (a Node.js or Python of its own):
# installed from Debian only when the command is missing.
DEBIAN_IF_MISSING := npm:npm python3:python3-venv
# metrics spec: a real Prometheus scrapes a temporal-lua process (its service stays held back
# by policy-rc.d below; the spec runs its own on 127.0.0.1 from a temp dir) and promtool lints the
# exposition; lua-http (on cqueues) is the optional built-in /metrics listener.
DEBIAN_PKGS += prometheus
DEBIAN_PKGS += lua-http
DEBIAN_PKGS += wrk  # make bench: the HTTP load of the nginx phase (bench/nginx.sh)

WARN     := -Wall -Wextra -Werror
# Where the Lua headers and the external libraries are: the defaults suit Debian; LuaRocks
# (temporal-lua-*.rockspec) passes its own LUA_INCDIR, GRPC_* and PROTOBUF_C_* directories.
LUA_INCDIR ?= /usr/include/lua$(LUA_VER)
EXT_INCS := $(if $(GRPC_INCDIR),-I$(GRPC_INCDIR)) $(if $(PROTOBUF_C_INCDIR),-I$(PROTOBUF_C_INCDIR))
EXT_LIBDIRS := $(if $(GRPC_LIBDIR),-L$(GRPC_LIBDIR)) $(if $(PROTOBUF_C_LIBDIR),-L$(PROTOBUF_C_LIBDIR))
# -Ulinux: one Temporal message has a field named "linux", a predefined macro in GNU C.
BASE_CFLAGS := -std=gnu11 -fPIC -Ulinux -D_GNU_SOURCE -I$(LUA_INCDIR) $(if $(COMPAT53_INCDIR),-I$(COMPAT53_INCDIR)) -Isrc -I$(GEN) $(EXT_INCS)
CFLAGS   ?= -O2 -g
LDLIBS   := $(EXT_LIBDIRS) -lgrpc -lgpr -lprotobuf-c -lpthread

CORE_SRCS := src/core.c src/runtime.c src/channel.c src/call.c src/pb.c src/registry.c src/json.c
CORE_SRCS += src/relay.c  # the socket relay (nginx's cosockets wait on it)
CORE_OBJS := $(CORE_SRCS:src/%.c=$(OUT)/obj/%.o)
LUA_MODS  := $(wildcard lua/temporal/*.lua)
# docs/reference.md as the module temporal.reference: the text help(x) shows at the prompt.
REFERENCE_MOD := $(BUILD)/temporal/reference.lua
HOST_MODS := $(wildcard lua/temporal/host/*.lua)  # host adapters (temporal.host.*)

.PHONY: all deps proto test demo install clean bench check-deps lint
ifeq ($(FLAVOUR),luajit)
# LuaJIT: the C module and the Lua modules (luajit or nginx is the interpreter).
all: $(OUT)/temporal/core.so $(REFERENCE_MOD)
else
all: $(BUILD)/temporal/core.so $(BUILD)/temporal-lua $(BUILD)/host_loop $(REFERENCE_MOD) \
  $(BUILD)/frame_loop $(BUILD)/many_states
endif

# Packages install with services held back (policy-rc.d): nginx and tinyproxy must not start
# system-wide listeners; the specs start their own on 127.0.0.1.
deps:
	@missing=$$(for p in $(DEBIAN_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done; \
	  for cp in $(DEBIAN_IF_MISSING); do command -v $${cp%%:*} >/dev/null || echo $${cp#*:}; done; \
	  python3 -c 'import ensurepip' 2>/dev/null || echo python3-venv); \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$(echo $$missing | sed 's/^/ /')"; \
	  rc_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then rc_policy=/usr/sbin/policy-rc.d; \
	    printf '#!/bin/sh\nexit 101\n' > $$rc_policy; chmod 755 $$rc_policy; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
	  [ -z "$$rc_policy" ] || rm -f $$rc_policy; exit $$rc; \
	else echo "deps: missing packages; run as root:"; echo "  apt-get install -y $$missing"; exit 1; fi

$(PROTO_PKG)/.pin: proto/pin.txt proto/fetch.sh
	@if [ "$(PROTO_DIR)" = "$(PROTO_PKG)/api_upstream" ] || [ "$(PROTO_EXTRA_DIR)" = "$(PROTO_PKG)" ]; then proto/fetch.sh $(PROTO_PKG); else mkdir -p $(PROTO_PKG) && touch $@; fi

$(GEN)/registry.inc: $(PROTO_PKG)/.pin proto/files.txt tools/genproto.sh
	tools/genproto.sh $(PROTO_DIR) $(PROTO_EXTRA_DIR) $(GEN)

proto: $(GEN)/registry.inc

# The generated sources are only known after generation: build them with a sub-make.
$(BUILD)/gen.a: $(GEN)/registry.inc
	@$(MAKE) --no-print-directory -f tools/gen.mk GEN=$(GEN) OUT=$(BUILD)/obj/gen CC="$(CC)" CFLAGS="$(CFLAGS) -fPIC -Ulinux -I$(GEN)" LIB=$@

$(OUT)/obj/%.o: src/%.c src/temporal_lua.h src/rpc.h src/compat.h $(GEN)/registry.inc
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(WARN) $(CFLAGS) -c $< -o $@

$(OUT)/temporal/core.so: $(CORE_OBJS) $(BUILD)/gen.a
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(CORE_OBJS) $(BUILD)/gen.a $(LDLIBS)

# temporal-lua embeds the pure-Lua modules so it runs from anywhere.
$(REFERENCE_MOD): docs/reference.md tools/embed.lua
	@mkdir -p $(dir $@)
	$(TOOL_LUA) tools/embed.lua --text $@ docs/reference.md

$(GEN)/embedded.c: tools/embed.lua $(LUA_MODS) $(HOST_MODS) $(REFERENCE_MOD)
	@mkdir -p $(dir $@)
	$(TOOL_LUA) tools/embed.lua $@ $(LUA_MODS) $(HOST_MODS) $(REFERENCE_MOD)

$(BUILD)/obj/embedded.o: $(GEN)/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

# temporal-lua links the gRPC C core and its chain (abseil, re2, upb, c-ares, OpenSSL,
# libstdc++, protobuf-c) statically when their archives are there, as Debian's -dev packages
# ship them: the dynamic loader otherwise binds ~12,500 symbols and ~42,000 relative
# relocations over 60 shared objects at every start, most of a cold start's CPU. Lua itself
# stays a shared library (the C modules a script loads bind to it). core.so and the ASan
# build link dynamically. TL_STATIC_GRPC=0 links temporal-lua dynamically too.
# Linked statically it is also a position-dependent executable (-no-pie, as Go builds its
# binaries): a PIE's ~50,000 relative relocations of C++ vtables and tables would be
# applied at every start and dirty 0.9 MiB of private pages; its own code then has no
# address randomisation (the shared libraries keep theirs). TL_PIE=1 keeps it a PIE.
GRPC_STATIC_LIBS := $(if $(GRPC_LIBDIR),,$(shell pkg-config --static --libs grpc 2>/dev/null))
TL_STATIC_GRPC ?= $(if $(and $(GRPC_STATIC_LIBS),$(filter /%,$(shell $(CC) -print-file-name=libgrpc.a))),1,0)
ifeq ($(TL_STATIC_GRPC),1)
TL_LDLIBS := -Wl,-Bstatic $(filter-out -ldl -pthread -lrt -latomic -Wl%,$(GRPC_STATIC_LIBS)) -lprotobuf-c -lstdc++ \
  -Wl,-Bdynamic -Wl,--as-needed -lpthread -lrt -latomic -Wl,--no-as-needed
TL_LDFLAGS := $(if $(filter 1,$(TL_PIE)),,-no-pie)
else
TL_LDLIBS := $(LDLIBS)
endif

$(BUILD)/temporal-lua: $(BUILD)/obj/main.o $(BUILD)/obj/embedded.o $(CORE_OBJS) $(BUILD)/gen.a
	$(CC) $(TL_LDFLAGS) -Wl,--export-dynamic-symbol=luaopen_temporal_core -o $@ $^ -llua$(LUA_VER) -lreadline $(TL_LDLIBS) -lm -ldl

test: deps
	@$(MAKE) --no-print-directory all asan
	@$(MAKE) --no-print-directory LUA=luajit all
	@TEMPORAL_TEST_ASAN=1 spec/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory LUA=luajit all  # examples/openresty runs in nginx's LuaJIT
	@examples/run-demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench-raw
	@$(MAKE) --no-print-directory LUA=luajit all
	@bench/run.sh
	@bench/nginx.sh  # the nginx phase: examples/openresty against a Python ASGI service (bench/README.md)

# The raw gRPC C core anchor of make bench (bench/README.md): the same unary calls, no Lua.
# Linked as temporal-lua is (statically, position-dependent when the archives are there), so
# its cold start and RSS stay the floor they stand for.
$(BUILD)/bench-raw: bench/raw.c
	$(CC) -std=gnu11 -D_GNU_SOURCE $(EXT_INCS) $(WARN) $(CFLAGS) $(TL_LDFLAGS) -o $@ $< $(EXT_LIBDIRS) \
	  $(if $(filter 1,$(TL_STATIC_GRPC)),$(TL_LDLIBS),-lgrpc -lgpr) -lm -ldl

# make soak [SOAK_SECONDS=300]: one client under a steady mix of calls; bench/soak.md
soak: deps
	@$(MAKE) --no-print-directory all
	@bench/soak.sh
.PHONY: soak

LUA_CDIR  := $(PREFIX)/lib/lua/$(LUA_VER)
LUA_LDIR  := $(PREFIX)/share/lua/$(LUA_VER)
# LUA=luajit installs into the 5.1 paths LuaJIT and nginx's Lua module search
# ($(PREFIX)/lib/lua/5.1, $(PREFIX)/share/lua/5.1), without temporal-lua.
install: all
	install -d $(DESTDIR)$(LUA_CDIR)/temporal $(DESTDIR)$(LUA_LDIR)/temporal/host
	install -m 755 $(OUT)/temporal/core.so $(DESTDIR)$(LUA_CDIR)/temporal/core.so
	install -m 644 $(LUA_MODS) $(REFERENCE_MOD) $(DESTDIR)$(LUA_LDIR)/temporal/
	$(if $(HOST_MODS),install -m 644 $(HOST_MODS) $(DESTDIR)$(LUA_LDIR)/temporal/host/)
	$(if $(filter lua54,$(FLAVOUR)),install -d $(DESTDIR)$(PREFIX)/bin && install -m 755 $(BUILD)/temporal-lua $(DESTDIR)$(PREFIX)/bin/temporal-lua)

clean:
	rm -rf $(BUILD)/obj $(BUILD)/temporal $(BUILD)/temporal-lua $(BUILD)/gen.a $(GEN) $(BUILD)/luajit

# The host-loop example: a C program with its own loop driving temporal (stock liblua5.4
# plus the temporal.core module found through package.cpath).
$(BUILD)/host_loop: examples/host_loop.c
	$(CC) $(BASE_CFLAGS) $(WARN) $(CFLAGS) -o $@ $< -llua$(LUA_VER) -lm -ldl
# A fixed-tick frame loop resuming its own coroutines (docs/hosts.md), and the many-states
# measurement (threads and memory per lua_State).
$(BUILD)/frame_loop: examples/hosts/frame_loop.c
	$(CC) $(BASE_CFLAGS) $(WARN) $(CFLAGS) -o $@ $< -llua$(LUA_VER) -lm -ldl
$(BUILD)/many_states: bench/many_states.c
	$(CC) $(BASE_CFLAGS) $(WARN) $(CFLAGS) -o $@ $< -llua$(LUA_VER) -lm -ldl
examples: $(BUILD)/host_loop $(BUILD)/frame_loop

# The Lua activity worker inside a C host's frame loop (pollfd/timeout/step), like host_loop.
all: $(BUILD)/activity_host
examples: $(BUILD)/activity_host
$(BUILD)/activity_host: examples/activity_host.c
	$(CC) $(BASE_CFLAGS) $(WARN) $(CFLAGS) -o $@ $< -llua$(LUA_VER) -lm -ldl

# AddressSanitizer + UBSan build of temporal-lua (everything linked in) for memory checks:
#   make asan && ASAN_OPTIONS=detect_leaks=1 build/asan/temporal-lua script.lua
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g
$(BUILD)/asan/temporal-lua: $(CORE_SRCS) src/main.c $(GEN)/embedded.c $(BUILD)/gen.a src/temporal_lua.h src/rpc.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(WARN) $(ASAN_FLAGS) -o $@ $(CORE_SRCS) src/main.c $(GEN)/embedded.c $(BUILD)/gen.a \
	  -llua$(LUA_VER) -lreadline $(LDLIBS) -lm -ldl
asan: $(BUILD)/asan/temporal-lua
.PHONY: asan examples

# luacheck with .luacheckrc over every Lua tree (make test runs it as spec/luacheck_spec.lua).
lint:
	luacheck lua spec examples bench tools

# LuaRocks (build type make, see temporal-lua-*.rockspec): `rock` builds, `rock-install`
# copies into the directories LuaRocks gives: INST_LIBDIR (C modules), INST_LUADIR (Lua
# modules), INST_BINDIR (the interpreter).
# Under LuaJIT (LuaRocks passes LUA=/path/to/luajit) the rock is the module without temporal-lua.
rock: $(OUT)/temporal/core.so $(REFERENCE_MOD) $(if $(filter lua54,$(FLAVOUR)),$(BUILD)/temporal-lua)
rock-install:
	install -d $(INST_LIBDIR)/temporal $(INST_LUADIR)/temporal/host
	install -m 755 $(OUT)/temporal/core.so $(INST_LIBDIR)/temporal/core.so
	install -m 644 $(LUA_MODS) $(REFERENCE_MOD) $(INST_LUADIR)/temporal/
	$(if $(HOST_MODS),install -m 644 $(HOST_MODS) $(INST_LUADIR)/temporal/host/)
	$(if $(filter lua54,$(FLAVOUR)),install -d $(INST_BINDIR) && install -m 755 $(BUILD)/temporal-lua $(INST_BINDIR)/temporal-lua)
.PHONY: rock rock-install

# skynet (../shared/hosts, not a Debian package) and temporal/core.so built against skynet's
# own Lua headers (skynet links Lua statically and exports its API): make skynet
SKYNET_TGZ ?= ../shared/hosts/skynet-1.8.0.tar.gz
SKYNET_DIR := $(BUILD)/skynet-1.8.0
SKYNET_OBJS := $(CORE_SRCS:src/%.c=$(BUILD)/skynet/obj/%.o)
$(SKYNET_DIR)/skynet:
	@mkdir -p $(BUILD)
	tar xzf $(SKYNET_TGZ) -C $(BUILD)/
	$(MAKE) -C $(SKYNET_DIR) linux MALLOC_STATICLIB= SKYNET_DEFINES=-DNOUSE_JEMALLOC >$(BUILD)/skynet-build.log 2>&1 || { tail -20 $(BUILD)/skynet-build.log; exit 1; }
$(BUILD)/skynet/obj/%.o: src/%.c src/temporal_lua.h src/rpc.h $(GEN)/registry.inc $(SKYNET_DIR)/skynet
	@mkdir -p $(dir $@)
	$(CC) $(subst -I$(LUA_INCDIR),-I$(SKYNET_DIR)/3rd/lua,$(BASE_CFLAGS)) $(WARN) $(CFLAGS) -c $< -o $@
$(BUILD)/skynet/temporal/core.so: $(SKYNET_OBJS) $(BUILD)/gen.a
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(SKYNET_OBJS) $(BUILD)/gen.a $(LDLIBS)
skynet: $(BUILD)/skynet/temporal/core.so
.PHONY: skynet

# libFuzzer harnesses (fuzz/) under ASan + UBSan for everything that reads untrusted bytes:
#   make fuzz                   each harness for FUZZ_SECONDS seconds (default 60)
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=protobuf
# Seeds live in fuzz/corpus/<target>; new inputs go to build/fuzz/work/<target>, findings
# to build/fuzz/findings/. fuzz/README.md has the results of long runs.
DEBIAN_PKGS += clang libclang-rt-14-dev  # make fuzz: libFuzzer, ASan and UBSan runtimes
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= json protobuf status_details toml
FUZZ_CC ?= clang
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g
$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/harness.h $(CORE_SRCS) $(BUILD)/gen.a src/temporal_lua.h src/rpc.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(BASE_CFLAGS) -Ifuzz -Wall -Wextra $(FUZZ_FLAGS) -DFUZZ_LUA_DIR='"$(CURDIR)/lua"' -o $@ $< \
	  $(CORE_SRCS) $(BUILD)/gen.a -llua$(LUA_VER) $(LDLIBS) -lm -ldl
fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)
.PHONY: fuzz fuzz-build
