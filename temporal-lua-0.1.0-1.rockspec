-- LuaRocks package of temporal-lua: `luarocks --lua-version 5.4 make` in a checkout.
-- Build type "make": LuaRocks finds gRPC and protobuf-c (external_dependencies below, the
-- LuaRocks way: GRPC_DIR / PROTOBUF_C_DIR or its search path) and hands their directories
-- and its own install directories to the Makefile's `rock` and `rock-install` targets.
-- The build fetches the pinned Temporal API protos (proto/pin.txt) like `make` does.
--
-- Lua 5.4 or LuaJIT 2.1: LuaRocks passes its interpreter as LUA, and the Makefile builds
-- the LuaJIT flavour (src/compat.h, the 5.1 paths, no temporal-lua) when it is a luajit.
-- PUC Lua 5.1-5.3 pass the dependency below but are refused by src/compat.h.
rockspec_format = "3.0"
package = "temporal-lua"
version = "0.1.0-1"
source = {
  -- `luarocks make` builds the checkout it runs in; nothing is downloaded for the source.
  url = "git+file:///temporal-lua",
}
description = {
  summary = "A Temporal client for Lua on the gRPC C core and protobuf-c",
  detailed = [[
    Start, signal, query, update and await Temporal workflows, manage schedules, complete
    activities asynchronously and call every WorkflowService / OperatorService RPC, with the
    Python SDK's defaults, payload formats and error classes. Lua coroutines make every call
    asynchronous; a pollfd/timeout/step protocol lets any host event loop drive it.
    Installs the `temporal` module and the `temporal-lua` interpreter.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",  -- 5.4, or LuaJIT 2.1 (which reports 5.1)
}
external_dependencies = {
  GRPC = { header = "grpc/grpc.h", library = "grpc" },
  PROTOBUF_C = { header = "protobuf-c/protobuf-c.h", library = "protobuf-c" },
}
build = {
  type = "make",
  build_target = "rock",
  install_target = "rock-install",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA = "$(LUA)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    GRPC_INCDIR = "$(GRPC_INCDIR)",
    GRPC_LIBDIR = "$(GRPC_LIBDIR)",
    PROTOBUF_C_INCDIR = "$(PROTOBUF_C_INCDIR)",
    PROTOBUF_C_LIBDIR = "$(PROTOBUF_C_LIBDIR)",
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
