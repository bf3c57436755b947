"""Go's strconv, the parts templates print and read through: FormatFloat ('e', 'f', 'g',
'b', 'x', shortest or with a precision), Quote and QuoteRune (Go's escapes, not Python's
repr), and Unquote / UnquoteChar for the template's string and character literals.

Digits come from Python's own correctly rounded conversions (repr is the shortest string
that reads back, as Go's shortest is; '%.*e' rounds the exact binary value half-to-even, as
Go's decimal rounding does); the layout around them (when %g switches to an exponent, how
many exponent digits, where zeros go) is Go's.
"""

from __future__ import annotations

import math
import struct
from typing import Optional, Tuple


class SyntaxErr(ValueError):
    """strconv.ErrSyntax: Go says "invalid syntax"."""

    def __init__(self) -> None:
        super().__init__("invalid syntax")


# -- floats -------------------------------------------------------------------------------------

def _digits(text: str) -> Tuple[str, int]:
    """('d.ddde±x' or 'ddd.ddd') -> (significant digits without leading/trailing zeros, the
    decimal point's position relative to them), as Go's decimalSlice holds a number."""
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    dp = len(whole) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    stripped = stripped.rstrip("0")
    if not stripped:
        return "", 0
    return stripped, dp


def _shortest(v: float) -> Tuple[str, int]:
    return _digits(repr(v))


def _fixed_significant(v: float, n: int) -> Tuple[str, int]:
    return _digits("%.*e" % (max(n, 1) - 1, v))


def _fmt_e(digits: str, dp: int, prec: int, e: str) -> str:
    out = digits[0] if digits else "0"
    if prec > 0:
        tail = digits[1:prec + 1]
        out += "." + tail + "0" * (prec - len(tail))
    exp = dp - 1 if digits else 0
    sign = "-" if exp < 0 else "+"
    exp = abs(exp)
    return f"{out}{e}{sign}{exp:02d}"


def _fmt_f(digits: str, dp: int, prec: int) -> str:
    if dp > 0:
        whole = digits[:dp] + "0" * max(0, dp - len(digits))
    else:
        whole = "0"
    if prec > 0:
        frac = "".join(digits[dp + i] if 0 <= dp + i < len(digits) else "0" for i in range(prec))
        return whole + "." + frac
    return whole


def _fmt_b(v: float) -> str:
    bits = struct.unpack(">Q", struct.pack(">d", v))[0]
    exp = (bits >> 52) & 0x7FF
    mant = bits & ((1 << 52) - 1)
    if exp == 0:
        exp = 1  # denormal
    else:
        mant |= 1 << 52
    exp += -1023 - 52
    return f"{mant}p{exp:+d}"


def _fmt_x(v: float, prec: int, upper: bool) -> str:
    """%x of a float: -0x1.23abcp+20, the mantissa shortest (prec < 0) or rounded to prec hex
    digits, the exponent with at least two digits."""
    if v == 0:
        mant, exp = 0, 0
    else:
        m, e = math.frexp(v)  # v = m * 2**e, 0.5 <= m < 1
        mant, exp = int(m * (1 << 53)), e - 1  # 1.xxx * 2**exp with 52 fraction bits
    frac_bits = 52
    if prec >= 0 and prec * 4 < frac_bits:
        shift = frac_bits - prec * 4
        half, rest = 1 << (shift - 1), mant & ((1 << shift) - 1)
        mant >>= shift
        if rest > half or (rest == half and mant & 1):
            mant += 1
        frac_bits = prec * 4
        if mant >> (frac_bits + 1):
            mant >>= 1
            exp += 1
    lead = mant >> frac_bits
    frac = mant & ((1 << frac_bits) - 1)
    hexfrac = format(frac, "0%dx" % (frac_bits // 4)) if frac_bits else ""
    if prec < 0:
        hexfrac = hexfrac.rstrip("0")
    elif len(hexfrac) < prec:
        hexfrac += "0" * (prec - len(hexfrac))
    out = f"0x{lead}" + ("." + hexfrac if hexfrac else "") + "p" + ("-" if exp < 0 else "+") + f"{abs(exp):02d}"
    return out.upper() if upper else out


def _float_digits(a: float, fmt: str, prec: int) -> Tuple[str, int, int]:
    """The digits (and decimal point) of |v| for `fmt`, and the precision to lay them out
    with: shortest when prec < 0, else correctly rounded to what the verb asks."""
    if prec < 0:
        digits, dp = _shortest(a) if a else ("", 0)
        if fmt in "eE":
            return digits, dp, max(len(digits) - 1, 0)
        if fmt == "f":
            return digits, dp, max(len(digits) - dp, 0)
        return digits, dp, len(digits)
    if fmt in "eE":
        digits, dp = _fixed_significant(a, prec + 1) if a else ("", 0)
    elif fmt == "f":
        digits, dp = _digits("%.*f" % (prec, a))
    else:
        prec = max(prec, 1)
        digits, dp = _fixed_significant(a, prec) if a else ("", 0)
    return digits, dp, prec


def _fmt_g(digits: str, dp: int, prec: int, shortest: bool, upper: bool) -> str:
    """%g: %e when the exponent is below -4 or at least the precision (6 for shortest)."""
    nd = len(digits)
    eprec = prec
    if eprec > nd and nd >= dp:
        eprec = nd
    if shortest:
        eprec = 6
    exp = dp - 1
    if exp < -4 or exp >= eprec:
        return _fmt_e(digits, dp, min(prec, nd) - 1, "E" if upper else "e")
    if prec > dp:
        prec = nd
    return _fmt_f(digits, dp, max(prec - dp, 0))


def format_float(v: float, fmt: str, prec: int) -> str:
    """strconv.FormatFloat(v, fmt, prec, 64)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    a = abs(v)
    if fmt == "b":
        return sign + _fmt_b(a)
    if fmt in "xX":
        return sign + _fmt_x(a, prec, fmt == "X")
    digits, dp, laid_out = _float_digits(a, fmt, prec)
    if fmt in "eE":
        return sign + _fmt_e(digits, dp, laid_out, fmt)
    if fmt == "f":
        return sign + _fmt_f(digits, dp, laid_out)
    return sign + _fmt_g(digits, dp, laid_out, prec < 0, fmt == "G")


# -- quoting ------------------------------------------------------------------------------------

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def is_print(ch: str) -> bool:
    """unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    if ch.isascii():
        return " " <= ch <= "~"
    import unicodedata  # memory cost: its tables are 0.2 MiB resident; only text beyond ASCII asks

    return unicodedata.category(ch)[0] in "LMNPS"


def _quote_rune_in(ch: str, quote: str, ascii_only: bool) -> str:
    if ch == quote or ch == "\\":
        return "\\" + ch
    if ascii_only:
        if ord(ch) < 0x80 and is_print(ch):
            return ch
    elif is_print(ch):
        return ch
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return "\\x%02x" % code
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate: Go's strings hold bytes, so it is invalid UTF-8
        return "\\ufffd"
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII)."""
    return '"' + "".join(_quote_rune_in(ch, '"', ascii_only) for ch in s) + '"'


def quote_rune(r: int, ascii_only: bool = False) -> str:
    """strconv.QuoteRune: 'a', '\\n', '\\x00'; an invalid rune is U+FFFD."""
    if r < 0 or r > 0x10FFFF or 0xD800 <= r <= 0xDFFF:
        r = 0xFFFD
    return "'" + _quote_rune_in(chr(r), "'", ascii_only) + "'"


def can_backquote(s: str) -> bool:
    return all(ch == "\t" or (ch != "`" and ch != "\ufeff" and ord(ch) >= 0x20 and ch != "\x7f") for ch in s)


_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unquote_char(s: str, quote: str) -> Tuple[str, str]:
    """strconv.UnquoteChar: the first character of `s` (a literal's body), decoded, and the
    rest. SyntaxErr where Go's would fail."""
    if not s:
        raise SyntaxErr()
    ch = s[0]
    if ch == quote and quote in "'\"":
        raise SyntaxErr()
    if ch != "\\":
        return ch, s[1:]
    if len(s) < 2:
        raise SyntaxErr()
    return _escape(s[1], s[2:], quote)


def _escape(c: str, rest: str, quote: str) -> Tuple[str, str]:
    """The character a backslash and `c` (and what follows in `rest`) stand for."""
    if c in _SIMPLE:
        return _SIMPLE[c], rest
    if c in "xuU":
        n = {"x": 2, "u": 4, "U": 8}[c]
        if len(rest) < n or any(d not in "0123456789abcdefABCDEF" for d in rest[:n]):
            raise SyntaxErr()
        value = int(rest[:n], 16)
        if c != "x" and (value > 0x10FFFF or 0xD800 <= value <= 0xDFFF):
            raise SyntaxErr()
        return chr(value), rest[n:]
    if c in "01234567":
        if len(rest) < 2 or any(d not in "01234567" for d in rest[:2]) or int(c + rest[:2], 8) > 255:
            raise SyntaxErr()
        return chr(int(c + rest[:2], 8)), rest[2:]
    if c in "'\"" and c == quote:
        return c, rest
    raise SyntaxErr()


def unquote(s: str) -> str:
    """strconv.Unquote for "..." and `...` literals."""
    if len(s) < 2:
        raise SyntaxErr()
    q = s[0]
    if q != s[-1]:
        raise SyntaxErr()
    body = s[1:-1]
    if q == "`":
        if "`" in body:
            raise SyntaxErr()
        return body.replace("\r", "")
    if q != '"' or "\n" in body:
        raise SyntaxErr()
    out = []
    while body:
        ch, body = unquote_char(body, q)
        out.append(ch)
    return "".join(out)


def parse_int(text: str) -> Optional[int]:
    """strconv.ParseInt(text, 0, 64) without the range check: Go's literal syntax (0x, 0o, 0b,
    a leading 0 for octal, underscores between digits); None where Go's would fail."""
    s = text
    neg = False
    if s[:1] in "+-":
        neg, s = s[0] == "-", s[1:]
    if not s:
        return None
    base, body = 10, s
    low = s.lower()
    if low.startswith("0x"):
        base, body = 16, s[2:]
    elif low.startswith("0o"):
        base, body = 8, s[2:]
    elif low.startswith("0b"):
        base, body = 2, s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, body = 8, s[1:]
    if "_" in s and not _underscores_ok(s):
        return None
    body = body.replace("_", "")
    if not body:
        return None
    try:
        value = int(body, base)
    except ValueError:
        return None
    return -value if neg else value


def _underscores_ok(s: str) -> bool:
    """Go's underscoreOK: '_' only between digits or between a base prefix and a digit."""
    saw = "^"  # ^ start, 0 digit or prefix, _ underscore, ! other
    i = 0
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "xbo":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if c.isdigit() or (hexa and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def parse_float(text: str) -> Optional[float]:
    """strconv.ParseFloat(text, 64): decimal and hex floats, Inf/NaN words, underscores;
    None where Go's would fail (including out of range, which Go reports as an error)."""
    s = text
    if "_" in s:
        if not _underscores_ok(s.lstrip("+-")):
            return None
        s = s.replace("_", "")
    low = s.lower().lstrip("+-")
    if low in ("inf", "infinity", "nan"):
        return float(s.replace("inity", "")) if low != "nan" else math.nan
    try:
        if "0x" in low[:3]:
            if "p" not in low:
                return None
            value = float.fromhex(s)
        else:
            if not all(c in "0123456789.eE+-" for c in s):
                return None
            value = float(s)
    except (ValueError, OverflowError):
        return None
    if math.isinf(value):
        return None
    return value


__all__ = ["SyntaxErr", "can_backquote", "format_float", "is_print", "parse_float", "parse_int", "quote",
           "quote_rune", "unquote", "unquote_char"]
