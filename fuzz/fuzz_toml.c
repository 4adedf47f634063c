/* The TOML profile parser (lua/temporal/envconfig.lua): any text either parses or raises
 * its own "<name>:<line>: <message>" error - never a Lua runtime error from inside. */
#define FUZZ_LUA_COVERAGE  /* the code under test is Lua */
#include "harness.h"

FUZZ_TARGET(
  "local envconfig = require('temporal.envconfig')\n"
  "function check(s)\n"
  "  local ok, e = pcall(envconfig.parse_toml, s, 'fuzz.toml')\n"
  "  if ok then\n"
  "    if type(e) ~= 'table' then error('BUG: parse_toml returned ' .. type(e)) end\n"
  "    return\n"
  "  end\n"
  "  if type(e) ~= 'string' or not e:match('^fuzz%.toml:%d+: ') then\n"
  "    error('BUG: parse_toml raised a foreign error: ' .. tostring(e))\n"
  "  end\n"
  "end\n")
