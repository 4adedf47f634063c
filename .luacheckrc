-- luacheck configuration (Debian lua-check): `luacheck lua spec examples bench`.
-- spec/luacheck_spec.lua runs it in `make test` and wants zero warnings.
std = "lua54"
-- Long lines are fine where they read better (tables of options, error messages, tests).
max_line_length = false
-- Arguments named in a callback's signature for documentation are not mistakes.
unused_args = false

files["spec/**/*.lua"] = { std = "+busted" }
-- nginx's Lua module: the ngx global in the OpenResty example and the nginx spec's handlers
files["examples/openresty/**/*.lua"] = { globals = { "ngx" } }
