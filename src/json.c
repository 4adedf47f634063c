/* Exact JSON for the `json/plain` payload encoding.
 *
 * The Python SDK writes json/plain payloads with
 *   json.dumps(value, separators=(",", ":"), sort_keys=True)
 * (ensure_ascii and allow_nan left at their defaults) and reads them with json.loads.
 * This codec produces the same bytes for the same data and reads them back without loss,
 * which lua-cjson cannot do (it turns every number into a float and keeps 14 digits).
 *
 * Rules (the spec in spec/json_spec.lua pins each one):
 *
 * Encoding
 *  - Lua integers: exact decimal over the whole int64 range.
 *  - Lua floats: the shortest digits that read back to the same double, laid out like
 *    Python's float repr ("1.0", "0.30000000000000004", "1e+16", "5e-324", "-0.0").
 *    NaN and infinities raise an error: Python would write NaN/Infinity, which is not JSON.
 *  - Strings: must be valid UTF-8 (else an error naming the path; bytes belong in
 *    temporal.binary); escaped like Python's ensure_ascii=True output: \" \\ \b \f \n \r \t,
 *    other control characters, DEL and every non-ASCII character as lowercase \uXXXX,
 *    astral characters as surrogate pairs.
 *  - Tables, unmarked: empty -> []; keys exactly 1..n -> array; a table.pack-style table
 *    (an integer field n >= 0, at least one item, all other keys integers in 1..n) -> array
 *    of length n with nil holes written as null; all keys strings -> object with keys sorted
 *    by bytes (code point order, as Python's sort_keys). A table holding only `n` is an
 *    object ({n = 3} -> {"n":3}): treating it as three nulls would silently change data.
 *    Anything else (holes without n, non-string keys, mixed keys) raises an error naming the
 *    path: Python would stringify such keys, we refuse to change data silently.
 *  - Tables, marked: a metatable with __jsontype = "array" | "object" (json_array_mt and
 *    json_object_mt carry it), or identical to opts.array_mt / opts.object_mt, forces the
 *    kind: an empty object-marked table is {}; an array-marked table may use n for holes.
 *    Metamethods (__index, __pairs) are ignored: tables are read raw.
 *  - json_null (a lightuserdata) -> null anywhere; nil at top level -> null.
 *  - Cycles -> "cyclic table at <path>"; nesting deeper than opts.max_depth (default 100,
 *    at most 1000) -> error; functions, threads, userdata -> error naming path and type.
 *
 * Decoding (strict RFC 8259)
 *  - Integers without fraction or exponent -> Lua integers when they fit int64; larger
 *    ones raise an error (Python writes 2**70 as an integer, a float would lose digits)
 *    unless opts.big_int = "float". Other numbers -> floats, read locale-independently;
 *    a number beyond the double range raises an error. "-0" -> integer 0 (as Python).
 *  - null -> json_null inside arrays and objects (so [null] and {"a":null} round-trip and
 *    arrays keep a proper length), nil at top level.
 *  - Every decoded array gets json_array_mt and every object json_object_mt, so
 *    encode(decode(s)) == s for Python's output, including [] and {}, even after the
 *    tables are edited.
 *  - Rejected: trailing data, a BOM, NaN/Infinity, leading zeros, "1.", ".5", "+1",
 *    trailing commas, invalid escapes, lone surrogates (\ud800), raw control characters
 *    in strings, invalid UTF-8, nesting deeper than opts.max_depth. Duplicate keys: the
 *    last one wins (as Python).
 *
 * Memory: output and scratch buffers live in userdata with __gc, allocated through the
 * state's allocator, so an error raised anywhere frees them with the garbage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale */
#endif
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "temporal_lua.h"

#define JSON_DEFAULT_MAX_DEPTH 100
#define JSON_LIMIT_MAX_DEPTH 1000 /* C recursion: keep well inside any thread's stack */
#define JSON_FRAMES_ON_STACK 128

/* Upvalues shared by json_encode and json_decode. */
#define JSON_UV_ARRAY_MT lua_upvalueindex(1)
#define JSON_UV_OBJECT_MT lua_upvalueindex(2)
#define JSON_UV_BUFFER_MT lua_upvalueindex(3)
#define JSON_UV_DECODE_CACHE lua_upvalueindex(4) /* json_decode_cache (userdata) */
#define JSON_UV_KEY_TABLE lua_upvalueindex(5)    /* anchors the cached keys' strings */

static const char json_null_tag = 0; /* its address is the json_null sentinel */
#define JSON_NULL ((void *)&json_null_tag)

/* Numbers are read with the C locale whatever setlocale() the host chose: Lua itself may
 * run under a locale with a decimal comma. */
static locale_t json_c_locale;
static pthread_once_t json_once = PTHREAD_ONCE_INIT;
/* Which bytes go out unchanged: printable ASCII but '"' and '\\'. */
static unsigned char json_plain_byte[256];
/* Which bytes a string's text reads without a second look: ASCII from 0x20 but '"' and
 * '\\' (DEL included, unlike json_plain_byte). */
static unsigned char json_plain_in[256];

static void json_once_init(void) {
  int c;
  json_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  for (c = 0; c < 256; c++) json_plain_byte[c] = (c >= 0x20 && c < 0x7F && c != '"' && c != '\\');
  for (c = 0; c < 256; c++) json_plain_in[c] = (c >= 0x20 && c < 0x80 && c != '"' && c != '\\');
}

/* ---------------------------------------------------------------- 8 bytes at a time */

/* Strings are scanned a word at a time for the bytes that need attention: the classic
 * "has a byte less than n" / "has a zero byte" tests, exact (no false negatives) for the
 * existence of such a byte; the byte loop after them finds which one. */
#define JSON_ONES 0x0101010101010101ULL
#define JSON_HIGHS 0x8080808080808080ULL

static inline uint64_t json_load8(const void *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

/* Nonzero when some byte of w is a control character (< 0x20), non-ASCII (>= 0x80), '"'
 * or '\\'. */
static inline uint64_t json_special8(uint64_t w) {
  uint64_t q = w ^ (JSON_ONES * '"'), bs = w ^ (JSON_ONES * '\\');
  return (((w - JSON_ONES * 0x20) & ~w) | ((q - JSON_ONES) & ~q) | ((bs - JSON_ONES) & ~bs) | w) & JSON_HIGHS;
}

/* The same, DEL (0x7F) included: the encoder escapes it, as Python does. */
static inline uint64_t json_special8_del(uint64_t w) {
  uint64_t d = w ^ (JSON_ONES * 0x7F);
  return json_special8(w) | ((d - JSON_ONES) & ~d & JSON_HIGHS);
}

/* Offset in the 8 bytes at p of the first one json_special8 flags (m, its nonzero
 * result). Exact on little-endian machines: a borrow of the tests only carries into later
 * bytes, so the lowest flag is a real one. Elsewhere the bytes are looked at in turn. */
static inline unsigned json_first_special(const char *p, uint64_t m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && (defined(__GNUC__) || defined(__clang__))
  (void)p;
  return (unsigned)__builtin_ctzll(m) >> 3;
#else
  unsigned k = 0;
  (void)m;
  while (json_plain_in[(unsigned char)p[k]]) k++;
  return k;
#endif
}

static inline uint32_t json_load4(const void *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
}

/* Copies n bytes without a call for short strings (overlapping moves inside both ends). */
static inline void json_copy(char *dst, const char *src, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, src, 8);
    memcpy(&b, src + n - 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a = json_load4(src), b = json_load4(src + n - 4);
    memcpy(dst, &a, 4);
    memcpy(dst + n - 4, &b, 4);
  } else if (n > 16) {
    memcpy(dst, src, n);
  } else {
    size_t i;
    for (i = 0; i < n; i++) dst[i] = src[i];
  }
}

/* a[0..n) == b[0..n), inline for short keys (memcmp was a call per key). */
static inline int json_same_bytes(const char *a, const char *b, size_t n) {
  size_t i;
  if (n >= 8) {
    for (i = 0; i + 8 <= n; i += 8)
      if (json_load8(a + i) != json_load8(b + i)) return 0;
    return i == n || json_load8(a + n - 8) == json_load8(b + n - 8);
  }
  if (n >= 4) return json_load4(a) == json_load4(b) && json_load4(a + n - 4) == json_load4(b + n - 4);
  for (i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* ---------------------------------------------------------------- growable buffer */

/* Heap memory of a buffer, freed by this userdata's finalizer if an error unwinds the
 * conversion before the buffer releases it itself. */
typedef struct {
  void *data;
  size_t cap;
} json_heap;

typedef struct {
  char *data;
  size_t len, cap;
  int borrowed;    /* data is the caller's first block (on its C stack): never freed here */
  int slot;        /* the stack slot (absolute index) that anchors heap once it is made */
  json_heap *heap; /* NULL until the buffer first takes heap memory */
} json_buffer;

/* The encoder's first block, on the C stack: a payload of a few KiB is written without a
 * single allocation or copy before the final string. */
#define JSON_FIRST_BLOCK 4096

static int json_buffer_gc(lua_State *L) {
  json_heap *h = lua_touserdata(L, 1);
  void *ud;
  lua_Alloc alloc = lua_getallocf(L, &ud);
  if (h->data) alloc(ud, h->data, h->cap, 0);
  h->data = NULL;
  h->cap = 0;
  return 0;
}

/* An empty buffer in *b (the caller's C frame); first (n bytes, may be NULL) is used until
 * the contents outgrow it. Pushes one stack slot (nil) where the finalizable owner of its
 * heap memory goes if it ever needs some: a conversion that fits in first makes no
 * userdata and leaves no finalizer to run. */
static void json_buffer_init(lua_State *L, json_buffer *b, char *first, size_t n) {
  b->data = first;
  b->len = 0;
  b->cap = first ? n : 0;
  b->borrowed = first != NULL;
  b->heap = NULL;
  lua_pushnil(L);
  b->slot = lua_gettop(L);
}

static void json_buffer_grow(lua_State *L, json_buffer *b, size_t extra) {
  size_t need = b->len + extra, cap = b->cap ? b->cap : 256;
  void *ud, *p;
  lua_Alloc alloc = lua_getallocf(L, &ud);
  if (need < b->len) luaL_error(L, "JSON text too large");
  if (!b->heap) {
    json_heap *h;
    luaL_checkstack(L, 2, "JSON buffer");
    h = lua_newuserdatauv(L, sizeof *h, 0);
    h->data = NULL;
    h->cap = 0;
    lua_pushvalue(L, JSON_UV_BUFFER_MT);
    lua_setmetatable(L, -2);
    lua_replace(L, b->slot);
    b->heap = h;
  }
  while (cap < need) {
    if (cap > ((size_t)-1) / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  if (b->borrowed) {
    p = alloc(ud, NULL, 0, cap);
    if (p && b->len) memcpy(p, b->data, b->len);
  } else {
    p = alloc(ud, b->data, b->data ? b->cap : 0, cap);
  }
  if (!p) luaL_error(L, "not enough memory for JSON text of %I bytes", (lua_Integer)need);
  b->data = p;
  b->cap = cap;
  b->borrowed = 0;
  b->heap->data = p;
  b->heap->cap = cap;
}

static inline void json_buffer_reserve(lua_State *L, json_buffer *b, size_t extra) {
  if (b->cap - b->len < extra) json_buffer_grow(L, b, extra);
}

/* Callers reserve first. */
static inline void json_buffer_put(json_buffer *b, const char *s, size_t n) {
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

/* Pushes the contents as a string and releases the memory now rather than at the next
 * collection: a 1 MiB payload should not linger. */
static void json_buffer_release(lua_State *L, json_buffer *b) {
  void *ud;
  lua_Alloc alloc = lua_getallocf(L, &ud);
  if (b->data && !b->borrowed) alloc(ud, b->data, b->cap, 0);
  if (b->heap) {
    b->heap->data = NULL;
    b->heap->cap = 0;
  }
  b->data = NULL;
  b->len = b->cap = 0;
}

static void json_buffer_push_release(lua_State *L, json_buffer *b) {
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  json_buffer_release(L, b);
}

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid: no overlong
 * forms, no surrogates, nothing above U+10FFFF. Stores the code point in *cp. */
static size_t json_utf8_decode(const unsigned char *s, size_t n, unsigned long *cp) {
  unsigned c = s[0];
  unsigned long v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c < 0xC2) return 0;
  if (c < 0xE0) {
    if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
    *cp = ((unsigned long)(c & 0x1F) << 6) | (s[1] & 0x3F);
    return 2;
  }
  if (c < 0xF0) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    v = ((unsigned long)(c & 0x0F) << 12) | ((unsigned long)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    v = ((unsigned long)(c & 0x07) << 18) | ((unsigned long)(s[1] & 0x3F) << 12) |
        ((unsigned long)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    if (v < 0x10000 || v > 0x10FFFF) return 0;
    *cp = v;
    return 4;
  }
  return 0;
}

/* The first byte from p on (before end) that is not plain string content (json_plain_in:
 * a quote, a backslash, a control character or a non-ASCII byte), or end: 8 bytes a step. */
static inline const char *json_skip_plain(const char *p, const char *end) {
  for (;;) {
    uint64_t m;
    if (end - p < 8) {
      while (p < end && json_plain_in[(unsigned char)*p]) p++;
      return p;
    }
    m = json_special8(json_load8(p));
    if (m) return p + json_first_special(p, m);
    p += 8;
  }
}

/* ---------------------------------------------------------------- numbers */

/* Digits of ax (finite, > 0) rounded to `precision` significant digits by printf, which
 * glibc rounds exactly. The decimal point is whatever the locale says: only digits are
 * taken. Returns the digit count; *exp10 gets the exponent of the first digit. */
static int json_printf_digits(double ax, int precision, char *digits, int *exp10) {
  char tmp[48];
  const char *p;
  int nd = 0, e = 0, negative = 0;
  snprintf(tmp, sizeof tmp, "%.*e", precision - 1, ax);
  for (p = tmp; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits[nd++] = *p;
  if (*p == 'e') p++;
  if (*p == '-') negative = 1;
  if (*p == '-' || *p == '+') p++;
  for (; *p >= '0' && *p <= '9'; p++) e = e * 10 + (*p - '0');
  *exp10 = negative ? -e : e;
  return nd;
}

/* Rounds the 17 correctly rounded digits d17 to n < 17 digits. The 17 digits are within
 * half a unit of their last place of the exact value, so they decide the rounding unless
 * the dropped tail is exactly 5000...: returns 0 then, and the caller asks printf. */
static int json_round_digits(const char *d17, int n, char *digits, int *exp10) {
  int i, up;
  if (d17[n] == '5') {
    for (i = n + 1; i < 17 && d17[i] == '0'; i++) {}
    if (i == 17) return 0;
  }
  up = d17[n] >= '5';
  memcpy(digits, d17, (size_t)n);
  if (up) {
    for (i = n - 1; i >= 0 && digits[i] == '9'; i--) digits[i] = '0';
    if (i < 0) {
      digits[0] = '1';
      (*exp10)++;
    } else {
      digits[i]++;
    }
  }
  return 1;
}

/* Adds one unit in the last of the n digits. */
static void json_bump_digits(char *digits, int n, int *exp10) {
  int i;
  for (i = n - 1; i >= 0 && digits[i] == '9'; i--) digits[i] = '0';
  if (i < 0) {
    digits[0] = '1';
    (*exp10)++;
  } else {
    digits[i]++;
  }
}

/* Lays out sign, digits and exponent like Python's float repr (float_repr_style 'short'
 * with Py_DTSF_ADD_DOT_0): exponent form below 1e-4 and from 1e16 on, else positional
 * with at least one digit after the point. Returns the length; out holds 32 bytes. */
static int json_layout_double(int negative, const char *digits, int nd, int exp10, char *out) {
  int decpt = exp10 + 1, len = 0, i;
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  if (negative) out[len++] = '-';
  if (decpt <= -4 || decpt > 16) {
    int e = decpt - 1, ae = e < 0 ? -e : e;
    out[len++] = digits[0];
    if (nd > 1) {
      out[len++] = '.';
      memcpy(out + len, digits + 1, (size_t)nd - 1);
      len += nd - 1;
    }
    out[len++] = 'e';
    out[len++] = e < 0 ? '-' : '+';
    if (ae >= 100) out[len++] = (char)('0' + ae / 100);
    out[len++] = (char)('0' + ae / 10 % 10);
    out[len++] = (char)('0' + ae % 10);
  } else if (decpt <= 0) {
    out[len++] = '0';
    out[len++] = '.';
    for (i = 0; i < -decpt; i++) out[len++] = '0';
    memcpy(out + len, digits, (size_t)nd);
    len += nd;
  } else if (decpt >= nd) {
    memcpy(out + len, digits, (size_t)nd);
    len += nd;
    for (i = nd; i < decpt; i++) out[len++] = '0';
    out[len++] = '.';
    out[len++] = '0';
  } else {
    memcpy(out + len, digits, (size_t)decpt);
    len += decpt;
    out[len++] = '.';
    memcpy(out + len, digits + decpt, (size_t)(nd - decpt));
    len += nd - decpt;
  }
  out[len] = '\0';
  return len;
}

/* The powers of ten a double holds exactly. */
static const double json_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The fast path of json_format_double: ax (>= 1e-4, < 1e15) is m / 10^k exactly as a
 * double for an integer m of at most 15 digits (1.5, 3.0, 19.99). Division of two exact
 * values is correctly rounded, so m / 10^k == ax means the decimal m*10^-k reads back to
 * ax; and two different decimals of at most 15 significant digits never read back to the
 * same double (DBL_DIG = 15), so it is the shortest form, the one Python's repr writes.
 * Returns the digit count (digits of m) and *exp10, or 0 when ax is not of that form. */
static int json_short_digits(double ax, char *digits, int *exp10) {
  int k, nd = 0, i;
  for (k = 0; k <= 18; k++) {
    double y = ax * json_pow10[k];
    if (y >= 1e15) return 0;
    if (y == floor(y) && (double)(uint64_t)y / json_pow10[k] == ax) {
      uint64_t m = (uint64_t)y;
      char tmp[24];
      do {
        tmp[nd++] = (char)('0' + m % 10);
        m /= 10;
      } while (m);
      for (i = 0; i < nd; i++) digits[i] = tmp[nd - 1 - i];
      *exp10 = nd - 1 - k;
      return nd;
    }
  }
  return 0;
}

/* Writes x (finite) the way Python's float repr does: the shortest digits that read back
 * to x, the nearest to x among those. Returns the length; out must hold 32 bytes. */
static int json_format_double(double x, char *out) {
  char d17[24], digits[24];
  int e17, exp10, n, len, negative = signbit(x) != 0;
  double ax = fabs(x);

  if (x == 0) return json_layout_double(negative, "0", 1, 0, out);
  if (ax >= 1e-4 && ax < 1e15 && (n = json_short_digits(ax, digits, &exp10)) > 0)
    return json_layout_double(negative, digits, n, exp10, out);
  if (ax < DBL_MIN) {
    /* Subnormals carry fewer digits (5e-324): search every length. */
    for (n = 1; n < 17; n++) {
      int nd = json_printf_digits(ax, n, digits, &exp10);
      len = json_layout_double(negative, digits, nd, exp10, out);
      if (strtod_l(out, NULL, json_c_locale) == x) return len;
    }
  } else {
    /* A normal double's shortest form has 15 digits or fewer exactly when its 15-digit
     * rounding reads back (DBL_DIG = 15), else 16 if its 16-digit rounding does, else 17.
     * One printf gives 17 digits; the shorter roundings are derived from them. */
    json_printf_digits(ax, 17, d17, &e17);
    for (n = 15; n <= 16; n++) {
      exp10 = e17;
      if (!json_round_digits(d17, n, digits, &exp10)) json_printf_digits(ax, n, digits, &exp10);
      len = json_layout_double(negative, digits, n, exp10, out);
      if (strtod_l(out, NULL, json_c_locale) == x) return len;
      /* At a power of two the doubles below are twice as dense as those above: the
       * nearest 16-digit decimal may fall just below x's interval while the next one up
       * is inside it. Python's repr picks that one. */
      if (n == 16) {
        int e2;
        if (frexp(ax, &e2) == 0.5) {
          json_bump_digits(digits, n, &exp10);
          len = json_layout_double(negative, digits, n, exp10, out);
          if (strtod_l(out, NULL, json_c_locale) == x) return len;
        }
      }
    }
    return json_layout_double(negative, d17, 17, e17, out);
  }
  n = json_printf_digits(ax, 17, digits, &exp10);
  return json_layout_double(negative, digits, n, exp10, out);
}

/* ---------------------------------------------------------------- encoder */

enum { JSON_CHILD_NONE, JSON_CHILD_INDEX, JSON_CHILD_KEY };

typedef struct {
  const void *table; /* the open table, for cycle detection */
  int child;         /* what is being written inside it: */
  lua_Integer index; /* an array item, */
  const char *key;   /* or the value of a string key (anchored on the stack) */
  size_t keylen;
} json_frame;

typedef struct {
  lua_State *L;
  json_buffer *out;
  json_frame *frames;
  int depth, max_depth;
  int array_mt, object_mt; /* stack indices of opts.array_mt / opts.object_mt, or 0 */
  int room;                /* stack slots up to this index are there (see json_room) */
  const char *root;        /* name of the value in error messages */
  struct json_shape *shapes; /* JSON_SHAPE_DEPTH of them, see json_encode_collected */
} json_encoder;

/* Makes sure n stack slots above the top are there. lua_checkstack keeps them for the
 * running C function (its frame's top is raised: the stack is never shrunk below it), so
 * one call with some slack covers the next tables instead of two calls per table. */
static inline void json_room(lua_State *L, int *room, int n, const char *what) {
  int top = lua_gettop(L);
  if (top + n > *room) {
    luaL_checkstack(L, n + 64, what);
    *room = top + n + 64;
  }
}

static int json_is_identifier(const char *s, size_t n) {
  size_t i;
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* Pushes a readable, quoted form of a key for messages: printable ASCII as is, other
 * bytes as \xNN, long keys cut. */
static void json_push_quoted(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  size_t i, shown = n > 60 ? 60 : n;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (i = 0; i < shown; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      luaL_addchar(&b, '\\');
      luaL_addchar(&b, (char)c);
    } else if (c >= 0x20 && c < 0x7F) {
      luaL_addchar(&b, (char)c);
    } else {
      char hex[5];
      snprintf(hex, sizeof hex, "\\x%02X", c);
      luaL_addstring(&b, hex);
    }
  }
  luaL_addchar(&b, '"');
  if (shown < n) luaL_addstring(&b, "...");
  luaL_pushresult(&b);
}

/* Pushes the path of the value being written, e.g. args[1].name or value["a b"][3]. */
static void json_push_path(json_encoder *e) {
  lua_State *L = e->L;
  int d;
  luaL_checkstack(L, 4, "JSON path");
  lua_pushstring(L, e->root);
  for (d = 0; d < e->depth; d++) {
    json_frame *f = &e->frames[d];
    if (f->child == JSON_CHILD_NONE) break;
    if (f->child == JSON_CHILD_INDEX) {
      lua_pushfstring(L, "[%I]", f->index);
    } else if (json_is_identifier(f->key, f->keylen)) {
      lua_pushliteral(L, ".");
      lua_pushlstring(L, f->key, f->keylen);
      lua_concat(L, 2);
    } else {
      lua_pushliteral(L, "[");
      json_push_quoted(L, f->key, f->keylen);
      lua_pushliteral(L, "]");
      lua_concat(L, 3);
    }
    lua_concat(L, 2); /* keep the stack shallow for deep paths */
  }
}

/* Raises "<path>: <message>"; message is a format for lua_pushfstring. */
static int json_encode_error(json_encoder *e, const char *fmt, ...) {
  lua_State *L = e->L;
  va_list ap;
  json_push_path(e);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return luaL_error(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
}

static void json_put_u_escape(json_buffer *b, unsigned long u) {
  static const char hex[] = "0123456789abcdef";
  char esc[6] = {'\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15], hex[(u >> 4) & 15], hex[u & 15]};
  json_buffer_put(b, esc, 6);
}

/* Length of the prefix of s (len bytes) that goes out unchanged (json_plain_byte). */
static inline size_t json_plain_prefix(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i + 8 <= len && !json_special8_del(json_load8(u + i))) i += 8;
  if (i < len && len - i < 8) {
    /* The last 1..7 bytes as one word (overlapping loads, or the first, middle and last
     * byte padded with 'a'): one test instead of a test per byte. */
    size_t n = len - i;
    uint64_t w = n >= 4 ? (uint64_t)json_load4(u + i) | (uint64_t)json_load4(u + len - 4) << 32
                        : 0x6161616161000000ULL | u[i] | (uint64_t)u[i + n / 2] << 8 | (uint64_t)u[len - 1] << 16;
    if (!json_special8_del(w)) return len;
  }
  while (i < len && json_plain_byte[u[i]]) i++;
  return i;
}

static void json_encode_escaped(json_encoder *e, const char *s, size_t len, int is_key, size_t i);

/* is_key: the string is a key of the open object (errors then name the object and key). */
static inline void json_encode_string(json_encoder *e, const char *s, size_t len, int is_key) {
  json_buffer *b = e->out;
  size_t i = json_plain_prefix(s, len);
  char *o;
  if (i < len) {
    json_encode_escaped(e, s, len, is_key, i);
    return;
  }
  json_buffer_reserve(e->L, b, len + 2); /* nothing to escape: the common case */
  o = b->data + b->len;
  o[0] = '"';
  json_copy(o + 1, s, len);
  o[len + 1] = '"';
  b->len += len + 2;
}

/* The string with something to escape from byte i on. */
static void json_encode_escaped(json_encoder *e, const char *s, size_t len, int is_key, size_t i) {
  lua_State *L = e->L;
  json_buffer *b = e->out;
  const unsigned char *u = (const unsigned char *)s;
  size_t run = 0;
  json_buffer_reserve(L, b, len + 2);
  b->data[b->len++] = '"';
  while (i < len) {
    unsigned char c = u[i];
    if (json_plain_byte[c]) {
      i++;
      continue;
    }
    json_buffer_reserve(L, b, (i - run) + 12 + (len - i));
    json_buffer_put(b, s + run, i - run);
    if (c < 0x80) {
      char esc[2] = {'\\', 0};
      switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: break;
      }
      if (esc[1]) json_buffer_put(b, esc, 2);
      else json_put_u_escape(b, c); /* other controls and DEL, as Python */
      i++;
    } else {
      unsigned long cp;
      size_t n = json_utf8_decode(u + i, len - i, &cp);
      if (n == 0) {
        if (is_key) {
          json_push_quoted(L, s, len);
          json_encode_error(e, "key %s is not valid UTF-8 (byte %I)", lua_tostring(L, -1), (lua_Integer)i + 1);
        }
        json_encode_error(e, "string is not valid UTF-8 at byte %I (use temporal.binary for bytes)",
                          (lua_Integer)i + 1);
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        json_put_u_escape(b, 0xD800 | (cp >> 10));
        json_put_u_escape(b, 0xDC00 | (cp & 0x3FF));
      } else {
        json_put_u_escape(b, cp);
      }
      i += n;
    }
    run = i;
  }
  json_buffer_reserve(L, b, (i - run) + 1);
  json_buffer_put(b, s + run, i - run);
  b->data[b->len++] = '"';
}

static void json_put_integer(json_buffer *b, lua_Integer v) {
  char tmp[24], *p = tmp + sizeof tmp;
  lua_Unsigned u = v < 0 ? (lua_Unsigned)0 - (lua_Unsigned)v : (lua_Unsigned)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  json_buffer_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

static void json_encode_value(json_encoder *e, int idx);

typedef struct {
  const char *s;
  size_t len;
  lua_Integer slot; /* where the key is anchored in the key table */
  int t;            /* its place in the table's traversal (small objects) */
} json_key;

static int json_key_compare(const void *a, const void *b) {
  const json_key *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->s, y->s, n);
  if (c) return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

enum { JSON_UNMARKED, JSON_ARRAY, JSON_OBJECT };

/* The forced kind from the table's metatable, if any. */
static int json_marked_kind(json_encoder *e, int idx) {
  lua_State *L = e->L;
  int kind = JSON_UNMARKED;
  if (!lua_getmetatable(L, idx)) return kind;
  if (e->array_mt && lua_rawequal(L, -1, e->array_mt)) kind = JSON_ARRAY;
  else if (e->object_mt && lua_rawequal(L, -1, e->object_mt)) kind = JSON_OBJECT;
  else {
    lua_pushliteral(L, "__jsontype");
    if (lua_rawget(L, -2) != LUA_TNIL) {
      const char *t = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(t, "array") == 0) kind = JSON_ARRAY;
      else if (strcmp(t, "object") == 0) kind = JSON_OBJECT;
      else json_encode_error(e, "metatable field __jsontype must be \"array\" or \"object\"");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return kind;
}

static void json_encode_array(json_encoder *e, int idx, lua_Integer length) {
  lua_State *L = e->L;
  json_frame *f = &e->frames[e->depth - 1];
  lua_Integer i;
  json_buffer_reserve(L, e->out, 2);
  e->out->data[e->out->len++] = '[';
  f->child = JSON_CHILD_INDEX;
  for (i = 1; i <= length; i++) {
    if (i > 1) {
      json_buffer_reserve(L, e->out, 1);
      e->out->data[e->out->len++] = ',';
    }
    f->index = i;
    lua_rawgeti(L, idx, i);
    json_encode_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  json_buffer_reserve(L, e->out, 1);
  e->out->data[e->out->len++] = ']';
}

/* Writes one member: "key":value, with the value at stack index vidx. */
static void json_encode_member(json_encoder *e, json_frame *f, const json_key *k, int first, int vidx) {
  lua_State *L = e->L;
  if (!first) {
    json_buffer_reserve(L, e->out, 1);
    e->out->data[e->out->len++] = ',';
  }
  f->child = JSON_CHILD_NONE; /* errors in the key itself name the object */
  json_encode_string(e, k->s, k->len, 1);
  json_buffer_reserve(L, e->out, 1);
  e->out->data[e->out->len++] = ':';
  f->child = JSON_CHILD_KEY;
  f->key = k->s;
  f->keylen = k->len;
  json_encode_value(e, vidx);
}

/* Objects of up to this many keys are sorted on the C stack, their keys and values
 * anchored on the Lua stack: no allocation and no second pass per object. Small, because
 * the array is in every level of the recursion (max_depth up to 1000). */
#define JSON_SMALL_OBJECT 8

/* a > b in json_key_compare's order (bytes, then length), inline for short keys. */
static inline int json_key_after(const json_key *a, const json_key *b) {
  size_t i, n = a->len < b->len ? a->len : b->len;
  const unsigned char *x = (const unsigned char *)a->s, *y = (const unsigned char *)b->s;
  for (i = 0; i < n; i++)
    if (x[i] != y[i]) return x[i] > y[i];
  return a->len > b->len;
}

/* The last small object's keys at each of the first JSON_SHAPE_DEPTH levels, for the
 * next object there: the records of a list share their keys and their traversal order
 * (tables built alike lay their keys out alike). An object whose keys, in traversal order,
 * have the bytes of its level's shape is written without sorting its keys or looking at
 * them again: the members' '"key":' come ready from the shape. Keys are compared by their
 * bytes, never by pointer, so a shape cannot outlive its strings' meaning. One per
 * json_encode call, on its C stack (a finalizer that encodes has its own). */
#define JSON_SHAPE_DEPTH 8
#define JSON_SHAPE_BYTES 200 /* every key's '"key":', in sorted order */

typedef struct json_shape {
  int n;                                  /* keys; 0: no shape */
  unsigned char len[JSON_SMALL_OBJECT];   /* by traversal place: the key's length */
  unsigned char kpos[JSON_SMALL_OBJECT];  /*   and where its bytes are in bytes[] */
  unsigned char order[JSON_SMALL_OBJECT]; /* by sorted place: the traversal place */
  unsigned char poff[JSON_SMALL_OBJECT];  /*   and where its '"key":' starts */
  char bytes[JSON_SHAPE_BYTES];
} json_shape;

static inline int json_shape_match(const json_shape *sh, const json_key *keys, int n) {
  int t;
  if (sh->n != n) return 0;
  for (t = 0; t < n; t++)
    if (keys[t].len != sh->len[t] || !json_same_bytes(keys[t].s, sh->bytes + sh->kpos[t], keys[t].len)) return 0;
  return 1;
}

/* Records sorted keys[0..n) as the shape, if they fit and need no escaping. */
static void json_shape_build(json_shape *sh, const json_key *keys, int n) {
  int i, pos = 0;
  sh->n = 0;
  for (i = 0; i < n; i++) {
    size_t len = keys[i].len;
    if (len > 255 || pos + (int)len + 3 > JSON_SHAPE_BYTES || json_plain_prefix(keys[i].s, len) != len) return;
    sh->poff[i] = (unsigned char)pos;
    sh->order[i] = (unsigned char)keys[i].t;
    sh->bytes[pos++] = '"';
    sh->kpos[keys[i].t] = (unsigned char)pos;
    sh->len[keys[i].t] = (unsigned char)len;
    memcpy(sh->bytes + pos, keys[i].s, len);
    pos += (int)len;
    sh->bytes[pos++] = '"';
    sh->bytes[pos++] = ':';
  }
  sh->n = n;
}

/* keys[0..n) were collected by json_encode_table's pass over the table, in traversal
 * order, their keys and values anchored on the Lua stack (slot: the value's index). */
static void json_encode_collected(json_encoder *e, json_key *keys, int n) {
  json_frame *f = &e->frames[e->depth - 1];
  json_shape *sh = e->depth <= JSON_SHAPE_DEPTH ? &e->shapes[e->depth - 1] : NULL;
  json_key k;
  int i, j;
  if (sh && json_shape_match(sh, keys, n)) {
    json_buffer *b = e->out;
    for (i = 0; i < n; i++) {
      const json_key *key = &keys[sh->order[i]];
      size_t plen = key->len + 3;
      json_buffer_reserve(e->L, b, plen + 1);
      if (i > 0) b->data[b->len++] = ',';
      json_copy(b->data + b->len, sh->bytes + sh->poff[i], plen);
      b->len += plen;
      f->child = JSON_CHILD_KEY;
      f->key = key->s;
      f->keylen = key->len;
      json_encode_value(e, (int)key->slot);
    }
    return;
  }
  for (i = 1; i < n; i++) { /* insertion sort: a handful of keys, mostly told apart early */
    k = keys[i];
    for (j = i - 1; j >= 0 && json_key_after(&keys[j], &k); j--) keys[j + 1] = keys[j];
    keys[j + 1] = k;
  }
  if (sh) json_shape_build(sh, keys, n);
  for (i = 0; i < n; i++) json_encode_member(e, f, &keys[i], i == 0, (int)keys[i].slot);
}

static void json_encode_object(json_encoder *e, int idx, lua_Integer count, json_key *collected, int ncollected) {
  lua_State *L = e->L;
  json_frame *f = &e->frames[e->depth - 1];
  json_key *keys;
  int keytable;
  lua_Integer n = 0, i;
  json_buffer_reserve(L, e->out, 2);
  e->out->data[e->out->len++] = '{';
  if (collected) {
    json_encode_collected(e, collected, ncollected);
  } else if (count > 0) {
    /* Keys are anchored in a table of their own while sorted pointers refer to them, so
     * nothing (not even a finalizer that edits the table) can free them under us. */
    if ((size_t)count > ((size_t)-1) / sizeof *keys) luaL_error(L, "table too large");
    keys = lua_newuserdatauv(L, (size_t)count * sizeof *keys, 0);
    lua_createtable(L, count > INT32_MAX ? INT32_MAX : (int)count, 0);
    keytable = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      if (n < count && lua_type(L, -1) == LUA_TSTRING) {
        keys[n].s = lua_tolstring(L, -1, &keys[n].len);
        keys[n].slot = n + 1;
        lua_pushvalue(L, -1);
        lua_rawseti(L, keytable, ++n);
      }
    }
    if (n > 1) qsort(keys, (size_t)n, sizeof *keys, json_key_compare);
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, keytable, keys[i].slot);
      lua_rawget(L, idx);
      json_encode_member(e, f, &keys[i], i == 0, lua_gettop(L));
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  json_buffer_reserve(L, e->out, 1);
  e->out->data[e->out->len++] = '}';
}

/* The common array, a sequence whose traversal yields 1, 2, ..., n in order (the array
 * part): written in the same pass that checks its keys, with no second pass of
 * lua_rawgeti. The first key and value are on the stack (above base). Returns 1 when it
 * wrote the table; 0 (output as it was, stack at base) when some key breaks the sequence: a string key (an object, the n of
 * table.pack, a mixed table), a hole, an index out of order. The caller's general path
 * then decides, and raises the error if there is one. An error in an item raised here
 * names the item, as the general path would; a table that is both broken and holds a
 * bad item before the break reports the item instead of the table's shape. */
static int json_encode_sequence(json_encoder *e, int idx, int base) {
  lua_State *L = e->L;
  json_frame *f = &e->frames[e->depth];
  size_t start = e->out->len;
  lua_Integer i = 1;
  int isnum;
  if (lua_tointegerx(L, -2, &isnum) != 1 || !isnum) {
    lua_settop(L, base);
    return 0;
  }
  e->depth++;
  json_buffer_reserve(L, e->out, 2);
  e->out->data[e->out->len++] = '[';
  f->child = JSON_CHILD_INDEX;
  for (;;) {
    f->index = i;
    json_encode_value(e, base + 2); /* lua_next leaves key and value at base + 1, + 2 */
    lua_pop(L, 1);
    if (!lua_next(L, idx)) break;
    if (lua_tointegerx(L, -2, &isnum) != ++i || !isnum) {
      lua_settop(L, base);
      e->out->len = start;
      e->depth--;
      f->child = JSON_CHILD_NONE;
      return 0;
    }
    json_buffer_reserve(L, e->out, 1);
    e->out->data[e->out->len++] = ',';
  }
  json_buffer_reserve(L, e->out, 1);
  e->out->data[e->out->len++] = ']';
  e->depth--;
  return 1;
}

/* Pushes a short description of the key on top of the stack. */
static const char *json_describe_key(lua_State *L) {
  switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
      if (lua_isinteger(L, -1)) return lua_pushfstring(L, "integer key %I", lua_tointeger(L, -1));
      return lua_pushfstring(L, "float key %f", lua_tonumber(L, -1));
    case LUA_TBOOLEAN: return lua_pushfstring(L, "boolean key %s", lua_toboolean(L, -1) ? "true" : "false");
    default: return lua_pushfstring(L, "key of type %s", luaL_typename(L, -1));
  }
}

static void json_encode_table(json_encoder *e, int idx) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);
  int d, kind, base, more, nkeys = 0, overflow = 0;
  json_key keys[JSON_SMALL_OBJECT];
  lua_Integer count = 0, npos = 0, maxpos = 0, nstr = 0, nval = -1;
  json_frame *f;

  for (d = 0; d < e->depth; d++) {
    if (e->frames[d].table == self) {
      json_push_path(e);
      luaL_error(L, "cyclic table at %s", lua_tostring(L, -1));
    }
  }
  if (e->depth >= e->max_depth) json_encode_error(e, "tables nested deeper than max_depth (%d)", e->max_depth);
  json_room(L, &e->room, 3 * JSON_SMALL_OBJECT + 8, "JSON nesting");
  kind = json_marked_kind(e, idx);
  base = lua_gettop(L);
  f = &e->frames[e->depth];
  f->table = self;
  f->child = JSON_CHILD_NONE;

  /* One pass to learn the shape. The string keys of a small object are collected on the
   * way (key and value left on the stack, anchored), so it is written without a second
   * pass. */
  lua_pushnil(L);
  more = lua_next(L, idx);
  if (more && kind != JSON_OBJECT && lua_type(L, -2) == LUA_TNUMBER) {
    if (json_encode_sequence(e, idx, base)) return;
    lua_pushnil(L); /* not a sequence: the general path, from the start */
    more = lua_next(L, idx);
  }
  for (; more; more = lua_next(L, idx)) {
    count++;
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      nstr++;
      if (kl == 1 && k[0] == 'n' && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0) nval = lua_tointeger(L, -1);
      if (!overflow && nkeys < JSON_SMALL_OBJECT) {
        lua_pushvalue(L, -2); /* the key again, for lua_next; key and value stay below */
        keys[nkeys].s = k;
        keys[nkeys].len = kl;
        keys[nkeys].slot = base + 2 * (nkeys + 1); /* the value, under the key's copy */
        keys[nkeys].t = nkeys;
        nkeys++;
        continue;
      }
      overflow = 1; /* too many to keep: the general path */
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      lua_Integer k = lua_tointeger(L, -1);
      npos++;
      if (k > maxpos) maxpos = k;
    } else {
      json_describe_key(L);
      json_encode_error(e, "table has %s; object keys must be strings and array keys 1..n",
                        lua_tostring(L, -1));
    }
  }

  if (kind == JSON_UNMARKED) {
    if (count == 0 || (nstr == 0 && maxpos == npos)) {
      kind = JSON_ARRAY;
    } else if (npos == 0) {
      kind = JSON_OBJECT;
    } else if (nval >= 0 && nstr == 1) {
      kind = JSON_ARRAY; /* table.pack style; n is checked below */
    } else if (nstr == 0) {
      json_encode_error(e, "array has holes (%I items, highest index %I); set n to the length "
                        "(table.pack does) to send nil as null", npos, maxpos);
    } else {
      json_encode_error(e, "table mixes integer keys and string keys; a JSON value is either an "
                        "array or an object");
    }
  }

  if (kind == JSON_ARRAY) {
    lua_Integer length = npos;
    if (nstr > (nval >= 0 ? 1 : 0)) json_encode_error(e, "table marked as array has string keys");
    if (nval >= 0) {
      if (maxpos > nval) json_encode_error(e, "array index %I is beyond its length n = %I", maxpos, nval);
      length = nval;
    } else if (maxpos != npos) {
      json_encode_error(e, "array has holes (%I items, highest index %I); set n to the length "
                        "to send nil as null", npos, maxpos);
    }
    lua_settop(L, base);
    e->depth++;
    json_encode_array(e, idx, length);
  } else {
    if (npos > 0) {
      json_encode_error(e, "table marked as object has integer keys (e.g. %I); object keys must "
                        "be strings", maxpos);
    }
    e->depth++;
    if (count > 0 && !overflow && nkeys == count) {
      json_encode_object(e, idx, count, keys, nkeys);
    } else {
      lua_settop(L, base);
      json_encode_object(e, idx, count, NULL, 0);
    }
    lua_settop(L, base);
  }
  e->depth--;
}

static void json_encode_value(json_encoder *e, int idx) {
  lua_State *L = e->L;
  json_buffer *b = e->out;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      json_buffer_reserve(L, b, 4);
      json_buffer_put(b, "null", 4);
      break;
    case LUA_TBOOLEAN:
      json_buffer_reserve(L, b, 5);
      if (lua_toboolean(L, idx)) json_buffer_put(b, "true", 4);
      else json_buffer_put(b, "false", 5);
      break;
    case LUA_TNUMBER:
      json_buffer_reserve(L, b, 32);
      if (lua_isinteger(L, idx)) {
        json_put_integer(b, lua_tointeger(L, idx));
      } else {
        double x = (double)lua_tonumber(L, idx);
        char num[32];
        if (isnan(x)) json_encode_error(e, "NaN is not valid JSON");
        if (isinf(x)) json_encode_error(e, "%s is not valid JSON", x > 0 ? "inf" : "-inf");
        json_buffer_put(b, num, (size_t)json_format_double(x, num));
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      json_encode_string(e, s, len, 0);
      break;
    }
    case LUA_TTABLE:
      json_encode_table(e, idx);
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == JSON_NULL) {
        json_buffer_reserve(L, b, 4);
        json_buffer_put(b, "null", 4);
        break;
      }
      /* fall through */
    default:
      if (tl_isboxedint(L, idx)) {  /* LuaJIT's int64_t / uint64_t cdata */
        char num[24];
        int n = tl_format_boxedint(L, idx, num);
        json_buffer_reserve(L, b, (size_t)n);
        json_buffer_put(b, num, (size_t)n);
        break;
      }
      json_encode_error(e, "cannot encode a value of type %s", luaL_typename(L, idx));
  }
}

/* Validates the options table at idx against the names allowed (NULL-terminated). */
static void json_check_options(lua_State *L, int idx, const char *fname, const char *const names[]) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int i, ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (i = 0; names[i]; i++)
        if (strcmp(lua_tostring(L, -1), names[i]) == 0) ok = 1;
    if (!ok) luaL_error(L, "%s: unknown option %s", fname, luaL_tolstring(L, -1, NULL));
  }
}

static int json_option_max_depth(lua_State *L, int idx, const char *fname) {
  lua_Integer d;
  if (lua_isnoneornil(L, idx)) return JSON_DEFAULT_MAX_DEPTH;
  if (lua_getfield(L, idx, "max_depth") == LUA_TNIL) {
    lua_pop(L, 1);
    return JSON_DEFAULT_MAX_DEPTH;
  }
  if (!lua_isinteger(L, -1)) luaL_error(L, "%s: option max_depth must be an integer", fname);
  d = lua_tointeger(L, -1);
  if (d < 1 || d > JSON_LIMIT_MAX_DEPTH)
    luaL_error(L, "%s: option max_depth must be between 1 and %d", fname, JSON_LIMIT_MAX_DEPTH);
  lua_pop(L, 1);
  return (int)d;
}

/* json_encode(value [, opts]) -> string
 * opts: max_depth (default 100), path (name used in errors, default "value"),
 *       array_mt / object_mt (extra metatables that mark arrays / objects). */
static int json_encode(lua_State *L) {
  static const char *const names[] = {"max_depth", "path", "array_mt", "object_mt", NULL};
  json_encoder e;
  json_buffer out;
  json_frame stack_frames[JSON_FRAMES_ON_STACK];
  json_shape shapes[JSON_SHAPE_DEPTH];
  char first[JSON_FIRST_BLOCK];
  int i;

  lua_settop(L, 2);
  json_check_options(L, 2, "json_encode", names);
  e.L = L;
  e.depth = 0;
  e.max_depth = json_option_max_depth(L, 2, "json_encode");
  e.root = "value";
  e.array_mt = e.object_mt = 0;
  e.room = 0;
  for (i = 0; i < JSON_SHAPE_DEPTH; i++) shapes[i].n = 0;
  e.shapes = shapes;
  if (!lua_isnil(L, 2)) {
    if (lua_getfield(L, 2, "path") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "json_encode: option path must be a string");
      e.root = lua_tostring(L, -1); /* stays on the stack */
    } else {
      lua_pop(L, 1);
    }
    if (lua_getfield(L, 2, "array_mt") != LUA_TNIL) {
      if (!lua_istable(L, -1)) luaL_error(L, "json_encode: option array_mt must be a table");
      e.array_mt = lua_gettop(L);
    } else {
      lua_pop(L, 1);
    }
    if (lua_getfield(L, 2, "object_mt") != LUA_TNIL) {
      if (!lua_istable(L, -1)) luaL_error(L, "json_encode: option object_mt must be a table");
      e.object_mt = lua_gettop(L);
    } else {
      lua_pop(L, 1);
    }
  }
  if (e.max_depth <= JSON_FRAMES_ON_STACK) {
    e.frames = stack_frames;
  } else {
    e.frames = lua_newuserdatauv(L, sizeof(json_frame) * (size_t)e.max_depth, 0);
  }
  json_buffer_init(L, &out, first, sizeof first);
  e.out = &out;
  json_encode_value(&e, 1);
  json_buffer_push_release(L, e.out);
  return 1;
}

/* ---------------------------------------------------------------- decoder */

/* Tables are created at the size of the last array / object decoded at the same depth
 * (JSON lists of records repeat their shape), up to this many slots: no rehash while
 * they fill, and little slack when the shape changes. */
#define JSON_HINT_DEPTH 32
#define JSON_HINT_MAX 16

/* Object keys repeat (a list of records has a handful of distinct keys, and the payloads
 * of one application have a handful of shapes): a key without escapes or non-ASCII bytes
 * is looked up in a small direct-mapped cache of the Lua strings made for earlier keys
 * before a new one is interned (which hashes it again). The cache and the size hints live
 * as long as the module (one per lua_State), so the first records of a payload are as
 * cheap as the others. A finalizer that decodes while a decode runs shares them: a hint
 * is only a size, and a cached key is checked to be the string it names before use. */
#define JSON_KEY_CACHE 64
#define JSON_PRED_DEPTH 16
#define JSON_PRED_KEYS 16

/* A large input is decoded on credit (Lua 5.4): before it starts, the collector's debt
 * is lowered by about what the value will take (LUA_GCSTEP with a negative size), so no
 * collection step runs while the value is built - such a step could only traverse the
 * tables and strings being made, all reachable (in generational mode it promoted the new
 * tree to old, and a later major collection had to find it dead). The credit is handed
 * back (LUA_GCSTEP with the same positive size) when the next decode starts, when the
 * value has usually been dropped: the collector's pace over the program is unchanged,
 * its steps come a little later. A decode that fails keeps the same account. Inputs
 * below JSON_GC_CREDIT_MIN bytes rarely see a collection step. */
#define JSON_GC_CREDIT_MIN 16384
#define JSON_GC_CREDIT_PER_KIB 4 /* KiB of Lua values per KiB of JSON: 3 in the bench's records */

typedef struct {
  unsigned char array_hint[JSON_HINT_DEPTH], object_hint[JSON_HINT_DEPTH];
  int gc_credit_kib; /* granted to the last large decode, not yet handed back */
  struct {
    const char *s; /* the bytes of the Lua string in slot i + 1 of the key table, or NULL */
    size_t len;
  } keys[JSON_KEY_CACHE];
} json_decode_cache;

typedef struct {
  lua_State *L;
  const char *start, *p, *end;
  int depth, max_depth;
  int big_int_float;
  json_buffer *scratch; /* for strings with escapes */
  unsigned char *array_hint, *object_hint;
  json_decode_cache *cache;
  /* This decode's own copy of the key cache, in JSON_KEY_CACHE stack slots from kbase: a
   * hit is one lua_pushvalue (the shared cache needs a lua_rawgeti and a check). Slot i
   * is loaded when bit i of kloaded is set; it then holds the string whose bytes are
   * ks[i] (kl[i] long), anchored by the stack for the whole decode. */
  int kbase; /* 0 for a text shorter than JSON_LOCAL_KEYS_MIN: no slots (kloaded stays 0) */
  int room;  /* see json_room */
  /* The slot of the key at each place of the last object at each depth: the next object
   * there usually has the same keys in the same order, and a key that has the predicted
   * bytes (then a quote) is pushed without a scan, a hash or a lookup. */
  unsigned char kpred[JSON_PRED_DEPTH][JSON_PRED_KEYS];
  uint64_t kloaded;
  const char *ks[JSON_KEY_CACHE];
  size_t kl[JSON_KEY_CACHE];
} json_decoder;
#define JSON_KEY_MAX 40 /* Lua's short strings */
/* Texts this long or longer get the decode's own key slots (below that, a few keys at most
 * repeat, and making the slots costs more than it saves). */
#define JSON_LOCAL_KEYS_MIN 256

static int json_decode_error(json_decoder *d, const char *at, const char *fmt, ...) {
  lua_State *L = d->L;
  const char *s;
  lua_Integer line = 1, column = 1;
  va_list ap;
  for (s = d->start; s < at; s++) {
    if (*s == '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return luaL_error(L, "json_decode: %s at line %I column %I (byte %I)", lua_tostring(L, -1), line, column,
                    (lua_Integer)(at - d->start) + 1);
}

static const char *json_describe_char(lua_State *L, const char *p, const char *end) {
  unsigned char c;
  char hex[8];
  if (p >= end) return "end of input";
  c = (unsigned char)*p;
  if (c > 0x20 && c < 0x7F) return lua_pushfstring(L, "character '%c'", c);
  snprintf(hex, sizeof hex, "0x%02X", c);
  return lua_pushfstring(L, "byte %s", hex);
}

/* The text is a Lua string: a '\0' follows its last byte. The hot paths test the next
 * byte against what they expect without checking for the end first: at the end they read
 * that '\0', which no test accepts, and the slow path then says what went wrong. */
static inline void json_skip_space(json_decoder *d) {
  const char *p = d->p;
  if ((unsigned char)*p > ' ') return; /* compact JSON: no space at all */
  while (p < d->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  d->p = p;
}

static void json_decode_value(json_decoder *d);
static void json_decode_object(json_decoder *d);
static void json_decode_array(json_decoder *d);

static int json_hex4(const char *p, unsigned long *out) {
  unsigned long v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned long)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned long)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned long)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static void json_put_utf8(json_buffer *b, unsigned long cp) {
  char *o = b->data + b->len;
  if (cp < 0x80) {
    o[0] = (char)cp;
    b->len += 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    b->len += 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    b->len += 3;
  } else {
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    b->len += 4;
  }
}

/* d->p is just after the opening quote. Pushes the string. */
static void json_decode_string_rest(json_decoder *d, const char *p);

/* Inline where strings are read: the common string, plain ASCII up to its closing quote,
 * is scanned and pushed here; anything else (non-ASCII, escapes, errors) continues in
 * json_decode_string_rest from the first such byte. */
static inline void json_decode_string(json_decoder *d) {
  const char *p = d->p, *end = d->end;
  p = json_skip_plain(p, end);
  if (p < end && *p == '"') {
    lua_pushlstring(d->L, d->p, (size_t)(p - d->p));
    d->p = p + 1;
    return;
  }
  json_decode_string_rest(d, p);
}

/* The string from d->p whose byte at p is not plain ASCII (or is the end). */
static void json_decode_string_rest(json_decoder *d, const char *p) {
  lua_State *L = d->L;
  const char *end = d->end, *run;
  json_buffer *b = d->scratch;
  /* Fast path: no escapes, the string is a slice of the input. */
  for (;;) {
    unsigned char c;
    p = json_skip_plain(p, end);
    if (p >= end) break;
    c = (unsigned char)*p;
    if (c < 0x80) break; /* the closing quote, an escape or a control character */
    {
      unsigned long cp;
      size_t n = json_utf8_decode((const unsigned char *)p, (size_t)(end - p), &cp);
      if (!n) json_decode_error(d, p, "invalid UTF-8 in string");
      p += n;
    }
  }
  if (p >= end) json_decode_error(d, p, "unterminated string");
  if (*p == '"') {
    lua_pushlstring(L, d->p, (size_t)(p - d->p));
    d->p = p + 1;
    return;
  }
  /* Slow path: copy into the scratch buffer, which at most needs the input's length. */
  b->len = 0;
  json_buffer_reserve(L, b, (size_t)(end - d->p));
  json_buffer_put(b, d->p, (size_t)(p - d->p));
  run = p;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c < 0x20) json_decode_error(d, p, "raw control character in string (must be escaped)");
    if (c >= 0x80) {
      unsigned long cp;
      size_t n = json_utf8_decode((const unsigned char *)p, (size_t)(end - p), &cp);
      if (!n) json_decode_error(d, p, "invalid UTF-8 in string");
      p += n;
      continue;
    }
    if (c != '\\') {
      p++;
      continue;
    }
    json_buffer_put(b, run, (size_t)(p - run));
    if (p + 1 >= end) json_decode_error(d, p, "unterminated string");
    switch (p[1]) {
      case '"': b->data[b->len++] = '"'; p += 2; break;
      case '\\': b->data[b->len++] = '\\'; p += 2; break;
      case '/': b->data[b->len++] = '/'; p += 2; break;
      case 'b': b->data[b->len++] = '\b'; p += 2; break;
      case 'f': b->data[b->len++] = '\f'; p += 2; break;
      case 'n': b->data[b->len++] = '\n'; p += 2; break;
      case 'r': b->data[b->len++] = '\r'; p += 2; break;
      case 't': b->data[b->len++] = '\t'; p += 2; break;
      case 'u': {
        unsigned long cp = 0, lo = 0;
        if (end - p < 6 || !json_hex4(p + 2, &cp)) json_decode_error(d, p, "invalid \\u escape");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
          json_decode_error(d, p, "lone surrogate \\u%s in string (not valid UTF-8)",
                            lua_pushlstring(L, p + 2, 4));
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !json_hex4(p + 8, &lo) || lo < 0xDC00 ||
              lo > 0xDFFF)
            json_decode_error(d, p, "lone surrogate \\u%s in string (not valid UTF-8)",
                              lua_pushlstring(L, p + 2, 4));
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 12; /* 12 input bytes -> 4 output bytes */
        } else {
          p += 6; /* 6 input bytes -> at most 3 output bytes */
        }
        json_put_utf8(b, cp);
        break;
      }
      default:
        json_decode_error(d, p, "invalid escape \\%c", p[1] >= 0x20 && p[1] < 0x7F ? p[1] : '?');
    }
    run = p;
  }
  if (p >= end) json_decode_error(d, p, "unterminated string");
  json_buffer_put(b, run, (size_t)(p - run));
  lua_pushlstring(L, b->data, b->len);
  d->p = p + 1;
}

static void json_decode_number(json_decoder *d) {
  lua_State *L = d->L;
  const char *p = d->p, *end = d->end, *start = p, *digits;
  int negative = 0, is_float = 0;
  if (*p == '-') {
    negative = 1;
    p++;
  }
  digits = p;
  if ((unsigned)(*p - '1') < 9) {
    /* Fast path, one pass: an integer of up to 18 digits (no overflow possible), or a
     * decimal of up to 15 digits without exponent (Clinger's exact case, as below). The
     * '\0' after the text stops the loops at its end. */
    uint64_t v = (uint64_t)(*p++ - '0');
    int nd = 1, fd = 0;
    while ((unsigned)(*p - '0') < 10 && nd < 18) {
      v = v * 10 + (uint64_t)(*p++ - '0');
      nd++;
    }
    if (*p == '.' && (unsigned)(p[1] - '0') < 10) {
      p++;
      while ((unsigned)(*p - '0') < 10 && nd < 16) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        nd++;
        fd++;
      }
      if (nd <= 15 && (unsigned)(*p - '0') >= 10 && *p != 'e' && *p != 'E') {
        double x = (double)v / json_pow10[fd];
        lua_pushnumber(L, (lua_Number)(negative ? -x : x));
        d->p = p;
        return;
      }
    } else if ((unsigned)(*p - '0') >= 10 && *p != '.' && *p != 'e' && *p != 'E') {
      lua_pushinteger(L, negative ? (lua_Integer)((lua_Unsigned)0 - v) : (lua_Integer)v);
      d->p = p;
      return;
    }
    p = digits; /* longer, or with an exponent: the general path */
  }
  if (p >= end || *p < '0' || *p > '9') json_decode_error(d, start, "invalid number");
  if (*p == '0') {
    p++;
    if (p < end && *p >= '0' && *p <= '9') json_decode_error(d, start, "number with a leading zero");
  } else {
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && *p == '.') {
    is_float = 1;
    p++;
    if (p >= end || *p < '0' || *p > '9') json_decode_error(d, start, "invalid number (digit expected after '.')");
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    is_float = 1;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') json_decode_error(d, start, "invalid number (digit expected in exponent)");
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (!is_float) {
    /* Exact: accumulate in unsigned, allowing one more for the negative side. */
    lua_Unsigned v = 0, limit = negative ? (lua_Unsigned)LUA_MAXINTEGER + 1 : (lua_Unsigned)LUA_MAXINTEGER;
    const char *q;
    int overflow = 0;
    for (q = digits; q < p; q++) {
      unsigned dgt = (unsigned)(*q - '0');
      if (v > (limit - dgt) / 10) {
        overflow = 1;
        break;
      }
      v = v * 10 + dgt;
    }
    if (!overflow) {
      lua_pushinteger(L, negative ? (lua_Integer)((lua_Unsigned)0 - v) : (lua_Integer)v);
      d->p = p;
      return;
    }
    if (!d->big_int_float) {
      size_t n = (size_t)(p - start);
      lua_pushlstring(L, start, n > 60 ? 60 : n);
      json_decode_error(d, start, "integer %s%s does not fit a 64-bit Lua integer (decode with "
                        "big_int = \"float\" to accept a rounded float)", lua_tostring(L, -1), n > 60 ? "..." : "");
    }
  }
  {
    /* Fast path (Clinger's): at most 15 significant digits and a power of ten up to 22
     * make m and 10^k exact doubles, so one multiplication or division is correctly
     * rounded: the double strtod returns. */
    uint64_t m = 0;
    int nd = 0, scale = 0, ok = 1, ex = 0, exneg = 0;
    const char *q = digits;
    for (; q < p && *q >= '0' && *q <= '9'; q++) {
      if (m || *q != '0') nd++;
      m = m * 10 + (uint64_t)(*q - '0');
      if (nd > 15) { ok = 0; break; }
    }
    if (ok && q < p && *q == '.') {
      for (q++; q < p && *q >= '0' && *q <= '9'; q++) {
        if (m || *q != '0') nd++;
        m = m * 10 + (uint64_t)(*q - '0');
        scale--;
        if (nd > 15) { ok = 0; break; }
      }
    }
    if (ok && q < p && (*q == 'e' || *q == 'E')) {
      q++;
      if (*q == '+' || *q == '-') exneg = *q++ == '-';
      for (; q < p; q++) {
        ex = ex * 10 + (*q - '0');
        if (ex > 400) { ok = 0; break; }
      }
      scale += exneg ? -ex : ex;
    }
    if (ok && scale >= -22 && scale <= 22) {
      double x = (double)m;
      x = scale < 0 ? x / json_pow10[-scale] : x * json_pow10[scale];
      lua_pushnumber(L, (lua_Number)(negative ? -x : x));
      d->p = p;
      return;
    }
  }
  {
    /* The span is valid JSON, a subset of what strtod reads; it stops at the same place
     * because JSON numbers are followed by a delimiter. */
    char *stop;
    double x = strtod_l(start, &stop, json_c_locale);
    if (stop != p) json_decode_error(d, start, "invalid number");
    if (isinf(x)) {
      size_t n = (size_t)(p - start);
      lua_pushlstring(L, start, n > 60 ? 60 : n);
      json_decode_error(d, start, "number %s is out of the range of a double", lua_tostring(L, -1));
    }
    lua_pushnumber(L, (lua_Number)x);
  }
  d->p = p;
}

static void json_expect_literal(json_decoder *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
    json_decode_error(d, d->p, "unexpected %s", json_describe_char(d->L, d->p, d->end));
  d->p += n;
}

static void json_enter(json_decoder *d) {
  if (++d->depth > d->max_depth)
    json_decode_error(d, d->p, "arrays/objects nested deeper than max_depth (%d)", d->max_depth);
  json_room(d->L, &d->room, 4, "JSON nesting");
}

static void json_decode_array(json_decoder *d) {
  lua_State *L = d->L;
  lua_Integer n = 0;
  json_enter(d);
  d->p++; /* '[' */
  lua_createtable(L, d->depth < JSON_HINT_DEPTH ? d->array_hint[d->depth] : 0, 0);
  lua_pushvalue(L, JSON_UV_ARRAY_MT);
  lua_setmetatable(L, -2);
  json_skip_space(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    return;
  }
  for (;;) {
    char c;
    json_decode_value(d);
    lua_rawseti(L, -2, ++n);
    c = *d->p;
    if (c != ',' && c != ']') {
      json_skip_space(d);
      c = *d->p;
    }
    if (c == ',') {
      d->p++;
      continue;
    }
    if (c == ']') {
      d->p++;
      break;
    }
    json_decode_error(d, d->p, "expected ',' or ']' but found %s", json_describe_char(L, d->p, d->end));
  }
  if (d->depth < JSON_HINT_DEPTH) d->array_hint[d->depth] = (unsigned char)(n < JSON_HINT_MAX ? n : JSON_HINT_MAX);
  d->depth--;
}

/* Pushes the key in this decode's slot h if it is the len bytes at d->p. */
static inline int json_key_local(json_decoder *d, unsigned h, size_t len) {
  if (((d->kloaded >> h) & 1u) && d->kl[h] == len && json_same_bytes(d->ks[h], d->p, len)) {
    lua_pushvalue(d->L, d->kbase + (int)h);
    return 1;
  }
  return 0;
}

/* Makes the string on top of the stack (len bytes at s) this decode's key in slot h. */
static inline void json_key_load(json_decoder *d, unsigned h, const char *s, size_t len) {
  if (!d->kbase) return; /* a short text: no slots */
  lua_pushvalue(d->L, -1);
  lua_replace(d->L, d->kbase + (int)h);
  d->ks[h] = s;
  d->kl[h] = len;
  d->kloaded |= (uint64_t)1 << h;
}

/* Pushes the key in the shared cache's slot h if it is the len bytes at d->p, and loads
 * it into this decode's slot h. */
static inline int json_key_cached(json_decoder *d, unsigned h, size_t len) {
  const char *s = d->cache->keys[h].s;
  if (d->cache->keys[h].len == len && s && json_same_bytes(s, d->p, len)) {
    lua_rawgeti(d->L, JSON_UV_KEY_TABLE, (lua_Integer)h + 1);
    if (lua_tostring(d->L, -1) == s) {
      json_key_load(d, h, s, len);
      return 1;
    }
    lua_pop(d->L, 1); /* not the string the entry names (cannot happen; stay safe) */
  }
  return 0;
}

/* d->p is just after a key's opening quote. Pushes the key. The cache is two-way: a key
 * is looked for in slot h and in its pair h ^ 1 (two keys of one shape that hash alike,
 * as "id" and "email" do, no longer evict each other on every record). */
static int json_decode_key(json_decoder *d) {
  const char *p = d->p, *end = d->end;
  size_t len;
  unsigned h;
  p = json_skip_plain(p, end);
  len = (size_t)(p - d->p);
  if (p >= end || *p != '"' || len == 0 || len > JSON_KEY_MAX) {
    json_decode_string(d); /* escapes, UTF-8, the empty key, long keys: the general path */
    return -1;
  }
  h = ((unsigned)len * 31u + (unsigned char)d->p[0] * 7u + (unsigned char)d->p[len - 1] +
       (unsigned char)d->p[len / 2] * 3u) & (JSON_KEY_CACHE - 1);
  if (json_key_local(d, h, len) || json_key_cached(d, h, len)) {
    d->p = p + 1;
    return (int)h;
  }
  if (json_key_local(d, h ^ 1u, len) || json_key_cached(d, h ^ 1u, len)) {
    d->p = p + 1;
    return (int)(h ^ 1u);
  }
  /* A miss: the entry in slot h moves to its pair (whose entry goes), the new key takes h.
   * An entry is cleared before its slot changes and set once the slot holds its string. */
  d->cache->keys[h ^ 1u].s = NULL;
  lua_rawgeti(d->L, JSON_UV_KEY_TABLE, (lua_Integer)h + 1);
  lua_rawseti(d->L, JSON_UV_KEY_TABLE, (lua_Integer)(h ^ 1u) + 1);
  d->cache->keys[h ^ 1u] = d->cache->keys[h];
  d->cache->keys[h].s = NULL; /* invalid until the slot holds the new string */
  lua_pushlstring(d->L, d->p, len);
  lua_pushvalue(d->L, -1);
  lua_rawseti(d->L, JSON_UV_KEY_TABLE, (lua_Integer)h + 1);
  d->cache->keys[h].s = lua_tostring(d->L, -1);
  d->cache->keys[h].len = len;
  json_key_load(d, h, d->cache->keys[h].s, len);
  d->p = p + 1;
  return (int)h;
}

static void json_decode_object(json_decoder *d) {
  lua_State *L = d->L;
  int n = 0;
  json_enter(d);
  d->p++; /* '{' */
  lua_createtable(L, 0, d->depth < JSON_HINT_DEPTH ? d->object_hint[d->depth] : 0);
  lua_pushvalue(L, JSON_UV_OBJECT_MT);
  lua_setmetatable(L, -2);
  json_skip_space(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    return;
  }
  for (;;) {
    char c;
    if (*d->p != '"') {
      json_skip_space(d);
      if (d->p >= d->end || *d->p != '"')
        json_decode_error(d, d->p, "expected a string key but found %s", json_describe_char(L, d->p, d->end));
    }
    d->p++;
    if (n < JSON_PRED_KEYS && d->depth < JSON_PRED_DEPTH && d->kbase) {
      /* The key at this place in the last object at this depth, if these are its bytes. */
      unsigned h = d->kpred[d->depth][n];
      size_t len = d->kl[h];
      if (((d->kloaded >> h) & 1u) && (size_t)(d->end - d->p) > len && d->p[len] == '"' &&
          json_same_bytes(d->ks[h], d->p, len)) {
        lua_pushvalue(L, d->kbase + (int)h);
        d->p += len + 1;
      } else {
        int slot = json_decode_key(d);
        if (slot >= 0) d->kpred[d->depth][n] = (unsigned char)slot;
      }
    } else {
      json_decode_key(d);
    }
    if (*d->p != ':') {
      json_skip_space(d);
      if (d->p >= d->end || *d->p != ':')
        json_decode_error(d, d->p, "expected ':' but found %s", json_describe_char(L, d->p, d->end));
    }
    d->p++;
    json_decode_value(d);
    lua_rawset(L, -3); /* a duplicate key overwrites: the last one wins, as in Python */
    n++;
    c = *d->p;
    if (c != ',' && c != '}') {
      json_skip_space(d);
      c = *d->p;
    }
    if (c == ',') {
      d->p++;
      continue;
    }
    if (c == '}') {
      d->p++;
      break;
    }
    json_decode_error(d, d->p, "expected ',' or '}' but found %s", json_describe_char(L, d->p, d->end));
  }
  if (d->depth < JSON_HINT_DEPTH) d->object_hint[d->depth] = (unsigned char)(n < JSON_HINT_MAX ? n : JSON_HINT_MAX);
  d->depth--;
}

/* Inline in the loops of arrays and objects: a scalar costs no call of its own. */
static inline __attribute__((always_inline)) void json_decode_value(json_decoder *d) {
  if ((unsigned char)*d->p <= ' ') {
    json_skip_space(d);
    if (d->p >= d->end) json_decode_error(d, d->p, "unexpected end of input");
  }
  switch (*d->p) {
    case '{': json_decode_object(d); break;
    case '[': json_decode_array(d); break;
    case '"':
      d->p++;
      json_decode_string(d);
      break;
    case 't':
      json_expect_literal(d, "true", 4);
      lua_pushboolean(d->L, 1);
      break;
    case 'f':
      json_expect_literal(d, "false", 5);
      lua_pushboolean(d->L, 0);
      break;
    case 'n':
      json_expect_literal(d, "null", 4);
      lua_pushlightuserdata(d->L, JSON_NULL);
      break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      json_decode_number(d);
      break;
    default:
      if (d->p == d->start && d->end - d->p >= 3 && memcmp(d->p, "\xEF\xBB\xBF", 3) == 0)
        json_decode_error(d, d->p, "UTF-8 byte order mark before the JSON value");
      json_decode_error(d, d->p, "expected a JSON value but found %s", json_describe_char(d->L, d->p, d->end));
  }
}

/* Decodes d's whole input and pushes the value. */
static int json_decode_run(lua_State *L, json_decoder *d) {
  json_buffer scratch;
  d->kbase = 0;
  d->kloaded = 0;
  d->room = 0;
  if (d->end - d->start >= JSON_LOCAL_KEYS_MIN) {
    luaL_checkstack(L, JSON_KEY_CACHE + 8, "JSON keys");
    memset(d->kpred, 0, sizeof d->kpred); /* slot 0, not loaded yet: no prediction */
    d->kbase = lua_gettop(L) + 1;
    lua_settop(L, d->kbase + JSON_KEY_CACHE - 1);
  }
  json_buffer_init(L, &scratch, NULL, 0);
  d->scratch = &scratch;
  json_decode_value(d);
  json_skip_space(d);
  if (d->p != d->end)
    json_decode_error(d, d->p, "unexpected %s after the JSON value", json_describe_char(L, d->p, d->end));
  json_buffer_release(L, &scratch);
  if (lua_touserdata(L, -1) == JSON_NULL) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  return 1;
}

/* json_decode(text [, opts]) -> value
 * opts: max_depth (default 100), big_int ("error" (default) or "float"). */
static int json_decode(lua_State *L) {
  static const char *const names[] = {"max_depth", "big_int", NULL};
  json_decoder d;
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  lua_settop(L, 2);
  json_check_options(L, 2, "json_decode", names);
  d.L = L;
  d.start = d.p = text;
  d.end = text + len;
  d.depth = 0;
  d.max_depth = json_option_max_depth(L, 2, "json_decode");
  d.big_int_float = 0;
  d.cache = lua_touserdata(L, JSON_UV_DECODE_CACHE);
  d.array_hint = d.cache->array_hint;
  d.object_hint = d.cache->object_hint;
  if (!lua_isnil(L, 2) && lua_getfield(L, 2, "big_int") != LUA_TNIL) {
    const char *mode = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(mode, "float") == 0) d.big_int_float = 1;
    else if (strcmp(mode, "error") != 0) luaL_error(L, "json_decode: option big_int must be \"error\" or \"float\"");
  }
  lua_settop(L, 2);
#if LUA_VERSION_NUM >= 504
  /* (LUA_GCSTEP would run a step even in a collector the program stopped: not then.) */
  if (d.cache->gc_credit_kib > 0 && lua_gc(L, LUA_GCISRUNNING)) {
    int kib = d.cache->gc_credit_kib;
    d.cache->gc_credit_kib = 0;
    lua_gc(L, LUA_GCSTEP, kib);
  }
  if (len >= JSON_GC_CREDIT_MIN && lua_gc(L, LUA_GCISRUNNING)) {
    size_t kib = len / 1024 * JSON_GC_CREDIT_PER_KIB;
    if (kib > INT_MAX / 2) kib = INT_MAX / 2;
    d.cache->gc_credit_kib = (int)kib;
    lua_gc(L, LUA_GCSTEP, -(int)kib);
  }
#endif
  return json_decode_run(L, &d);
}

/* ---------------------------------------------------------------- module */

static const luaL_Reg json_functions[] = {
  {"json_encode", json_encode},
  {"json_decode", json_decode},
  {NULL, NULL},
};

static void json_push_marker_mt(lua_State *L, const char *kind, const char *name) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "__jsontype");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
}

void tl_json_open(lua_State *L) {
  pthread_once(&json_once, json_once_init);
  if (json_c_locale == (locale_t)0) luaL_error(L, "temporal.core: cannot create the C locale for JSON numbers");

  luaL_checkstack(L, 16, "temporal.core json");
  json_push_marker_mt(L, "array", "temporal.array");
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "json_array_mt");
  json_push_marker_mt(L, "object", "temporal.object");
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "json_object_mt");
  lua_createtable(L, 0, 2); /* buffer metatable */
  lua_pushcfunction(L, json_buffer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "temporal.json_buffer");
  lua_setfield(L, -2, "__name");
  memset(lua_newuserdatauv(L, sizeof(json_decode_cache), 0), 0, sizeof(json_decode_cache));
  lua_createtable(L, JSON_KEY_CACHE, 0);
  luaL_setfuncs(L, json_functions, 5);
  lua_pushlightuserdata(L, JSON_NULL);
  lua_setfield(L, -2, "json_null");
}
