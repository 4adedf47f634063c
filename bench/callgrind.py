"""Where a client's instructions go: reads callgrind output files (the format callgrind
writes, version 1) and sums each function's own instructions (self cost, "Ir"), then groups
them by component: the gRPC core, abseil, the Lua VM, libc's malloc/free, protobuf-c,
temporal-lua's own C files, ...

bench/bench.py runs every callgrind measurement twice (a small and a big run) and reports
the difference divided by the difference of the call counts, so start-up, connect and exit
cancel out; per_call() does that for the components and the functions.

    python bench/callgrind.py SMALL.out BIG.out CALLS_SMALL CALLS_BIG   # a table, for a look

temporal-lua and bench-raw link the gRPC chain statically, so most code sits in the
executable's object and has no source file (the Debian archives carry no debug info): those
functions are classified by their (demangled) names. liblua5.4 is stripped: its functions
are hex addresses, classified by the object.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

# The archives temporal-lua and bench-raw link statically (Makefile, TL_LDLIBS), by component:
# the executable's functions are looked up in their symbol tables (nm), static ones included.
_ARCHIVES = [
    ("gRPC core", ("libgrpc.a", "libgpr.a", "libupb*.a", "libaddress_sorting.a")),
    ("abseil", ("libabsl_*.a",)),
    ("protobuf-c", ("libprotobuf-c.a",)),
    ("re2", ("libre2.a",)),
    ("c-ares", ("libcares.a",)),
    ("OpenSSL", ("libssl.a", "libcrypto.a")),
]
# Fallbacks by name, for what the archives do not name (compiler clones, other builds).
_NAME_RULES = [
    ("abseil", ("absl::",)),
    ("protobuf-c", ("protobuf_c_",)),
    ("re2", ("re2::",)),
    ("c-ares", ("ares_",)),
    ("gRPC core", ("grpc", "gpr_", "tsi_", "upb_", "_upb")),
    ("C++ runtime (libstdc++)", ("std::", "operator new", "operator delete", "__cxa", "__gnu_cxx",
                                 "__cxxabiv1", "__dynamic_cast", "__gxx", "__tls_init")),
]


_MALLOC = re.compile(r"^(malloc|free|calloc|realloc|cfree|_int_malloc|_int_free|_int_realloc|"
                     r"malloc_consolidate|unlink_chunk|tcache_\w+|__libc_malloc|__libc_free|"
                     r"__libc_calloc|__libc_realloc|sysmalloc|alloc_perturb|arena_get2|"
                     r"_int_free_merge_chunk|_int_free_create_chunk|_int_free_maybe_consolidate|"
                     r"posix_memalign|memalign|_mid_memalign|_int_memalign|aligned_alloc)\b")
_archive_map: dict[str, str] | None = None
_SUFFIX = re.compile(r"('\d+)+$")  # callgrind's recursion-level suffix: f'2


def archive_symbols() -> dict[str, str]:
    """Demangled name -> component for every function the static archives define."""
    global _archive_map
    if _archive_map is not None:
        return _archive_map
    _archive_map = {}
    try:
        libdir = subprocess.run(["cc", "-print-file-name=libgrpc.a"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
    except OSError:
        return _archive_map
    libdir = os.path.dirname(libdir) if libdir.startswith("/") else "/usr/lib/x86_64-linux-gnu"
    for comp, patterns in _ARCHIVES:
        files = sorted(f for p in patterns for f in glob.glob(os.path.join(libdir, p)))
        if not files:
            continue
        try:
            out = subprocess.run(["nm", "-C", "--defined-only", *files], capture_output=True,
                                 text=True, timeout=120).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1] in "tTwWiI":
                _archive_map.setdefault(parts[2], comp)
    return _archive_map


def classify(ob: str, fl: str, fn: str, exe: str, root: str) -> str:
    """The component a function belongs to: by its object, then its source file, then its
    name (for the executable's statically linked archives)."""
    fn = _SUFFIX.sub("", fn)
    base = os.path.basename(ob)
    if base.startswith("ld-linux"):
        return "dynamic loader"
    if base.startswith("libc.so"):
        return "libc malloc/free" if _MALLOC.match(fn) else "libc (other)"
    if base.startswith("libm.so"):
        return "libc (other)"
    if base.startswith("liblua") or base.startswith("libluajit"):
        return "Lua VM (liblua, stripped)"
    if base.startswith(("libstdc++", "libgcc_s")):
        return "C++ runtime (libstdc++)"
    if base.startswith("libprotobuf-c"):
        return "protobuf-c"
    if base.startswith(("libgrpc", "libgpr", "libupb", "libaddress_sorting")):
        return "gRPC core"
    if base.startswith("libabsl"):
        return "abseil"
    if base.startswith(("libssl", "libcrypto")):
        return "OpenSSL"
    if base.startswith("libcares"):
        return "c-ares"
    if base.startswith("libre2"):
        return "re2"
    if base.startswith("vgpreload"):
        return "valgrind's preload"
    if ob in ("", "???"):
        return "PLT stubs, unknown code"
    if ob != exe and base != os.path.basename(exe):
        return "other libraries"
    # The executable: its own sources by file, the archives by their symbol tables.
    if root and fl.startswith(root + "/src/"):
        return "temporal-lua C: " + fl[len(root) + 5:]
    if "/build/gen/" in fl or fl.endswith(".pb-c.c"):
        return "protobuf-c"  # generated descriptors and their init code
    if root and fl.startswith(root + "/bench/"):
        return "raw C program: " + os.path.basename(fl)
    comp = archive_symbols().get(fn)
    if comp:
        return comp
    for comp, prefixes in _NAME_RULES:
        if any(p in fn for p in prefixes):
            return comp
    if _MALLOC.match(fn):
        return "libc malloc/free"
    return "other (executable)"


class Profile:
    """Self cost (the first event, Ir) per (object, file, function) of one callgrind file."""

    def __init__(self, path: str):
        self.cost: dict[tuple[str, str, str], int] = {}
        self.total = 0
        self.cmd = ""
        names: dict[str, dict[str, str]] = {"ob": {}, "fl": {}, "fn": {}}
        kind = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
                "fn": "fn", "cfn": "fn"}
        npos = 1
        ob = fl = fn = ""
        key = None
        acc = 0
        skip_next = False  # the cost line after calls= is the call's inclusive cost
        cost = self.cost

        def name(field: str, value: str) -> str:
            table = names[kind[field]]
            if value.startswith("("):
                end = value.index(")")
                ident, rest = value[1:end], value[end + 1:].strip()
                if rest:
                    table[ident] = rest
                    return rest
                return table.get(ident, "???")
            return value

        with open(path, errors="replace") as f:
            for line in f:
                c = line[0]
                if c.isdigit() or c in "+-*":
                    if skip_next:
                        skip_next = False
                        continue
                    parts = line.split()
                    if len(parts) > npos:
                        acc += int(parts[npos])
                    continue
                if line.startswith("fn="):
                    if key is not None and acc:
                        cost[key] = cost.get(key, 0) + acc
                    fn = name("fn", line[3:].strip())
                    key, acc = (ob, fl, fn), 0
                    continue
                if line.startswith("calls="):
                    skip_next = True
                    continue
                eq = line.find("=")
                if eq > 0:
                    field = line[:eq]
                    if field in kind:
                        value = name(field, line[eq + 1:].strip())
                        if field == "ob":
                            ob = value
                        elif field == "fl":
                            fl = value
                    continue
                if line.startswith("positions:"):
                    npos = len(line.split()) - 1
                elif line.startswith("cmd:"):
                    self.cmd = line[4:].strip()
                elif line.startswith(("summary:", "totals:")):
                    self.total = max(self.total, int(line.split()[1]))
        if key is not None and acc:
            cost[key] = cost.get(key, 0) + acc
        if not self.total:
            self.total = sum(cost.values())


def _by(profile: Profile, exe: str, root: str):
    comps: dict[str, int] = {}
    fns: dict[tuple[str, str], int] = {}
    for (ob, fl, fn), ir in profile.cost.items():
        comp = classify(ob, fl, fn, exe, root)
        comps[comp] = comps.get(comp, 0) + ir
        k = (_SUFFIX.sub("", fn), comp)
        fns[k] = fns.get(k, 0) + ir
    return comps, fns


def per_call(small: str, big: str, calls_small: int, calls_big: int, exe: str, root: str,
             top: int = 25) -> dict:
    """Instructions per call by component and the top functions: (big - small) / (calls_big -
    calls_small). exe: the client's executable (its object name in the files)."""
    a, b = Profile(small), Profile(big)
    n = calls_big - calls_small
    ca, fa = _by(a, exe, root)
    cb, fb = _by(b, exe, root)
    comps = {k: (cb.get(k, 0) - ca.get(k, 0)) / n for k in set(ca) | set(cb)}
    fns = {k: (fb.get(k, 0) - fa.get(k, 0)) / n for k in set(fa) | set(fb)}
    tops = sorted(fns.items(), key=lambda kv: -kv[1])[:top]
    return {
        "total_per_call": (b.total - a.total) / n,
        "components": dict(sorted(comps.items(), key=lambda kv: -kv[1])),
        "top_functions": [{"function": fn, "component": comp, "per_call": v} for (fn, comp), v in tops],
    }


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    small, big, n0, n1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    exe = Profile(big).cmd.split()[0] if Profile(big).cmd else ""
    if exe and not exe.startswith("/"):
        exe = os.path.abspath(exe)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = per_call(small, big, n0, n1, exe, root)
    print(f"total {r['total_per_call']:,.0f} instructions per call")
    for comp, v in r["components"].items():
        print(f"{v:12,.0f}  {comp}")
    print()
    for t in r["top_functions"]:
        print(f"{t['per_call']:12,.0f}  {t['function'][:90]}  [{t['component']}]")


if __name__ == "__main__":
    main()
