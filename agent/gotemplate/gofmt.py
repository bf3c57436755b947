"""Go's fmt as templates reach it: Sprint (what an action prints), Sprintf (`printf`) and
Sprintln, with Go's verbs, flags, widths, precisions and argument indexes, and Go's text for
every mistake: `%!d(float64=42)` for a verb the value's type lacks, `%!s(MISSING)` for a
missing argument, `%!(EXTRA float64=1)` for one too many, `%!(NOVERB)`, `%!(BADWIDTH)`.

Values are this package's Go values (gotypes): Python's bool, int, float, complex, str and
None stand for Go's bool, int, float64, complex128, string and nil.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

from .gotypes import GoStruct, Stringer, kind, type_name
from .strconv import can_backquote, format_float, quote, quote_rune

_TOO_LARGE = 1_000_000  # Go refuses widths and precisions from here on


class _Flags:
    __slots__ = ("plus", "minus", "sharp", "space", "zero", "wid", "prec", "plus_v", "sharp_v")

    def __init__(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid: Optional[int] = None
        self.prec: Optional[int] = None


class _Printer:
    def __init__(self) -> None:
        self.buf: List[str] = []
        self.f = _Flags()

    # -- padding ----------------------------------------------------------------------------

    def pad(self, s: str) -> None:
        f = self.f
        if not f.wid:
            self.buf.append(s)
            return
        width = f.wid - len(s)
        if width <= 0:
            self.buf.append(s)
        elif f.minus:
            self.buf.append(s + " " * width)
        else:
            self.buf.append(("0" if f.zero else " ") * width + s)

    # -- by kind ----------------------------------------------------------------------------

    def fmt_integer(self, v: int, base: int, verb: str, upper: bool = False) -> None:
        f = self.f
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if f.prec is not None:
            prec = f.prec
            if prec == 0 and u == 0:
                zero, f.zero = f.zero, False
                self.pad("")
                f.zero = zero
                return
        elif f.zero and f.wid:
            prec = f.wid
            if negative or f.plus or f.space:
                prec -= 1
        digits = {10: "%d", 16: "%x", 8: "%o", 2: "{:b}"}[base]
        s = digits.format(u) if base == 2 else digits % u
        if upper:
            s = s.upper()
        if len(s) < prec:
            s = "0" * (prec - len(s)) + s
        if f.sharp:
            if base == 2:
                s = "0b" + s
            elif base == 8 and not s.startswith("0"):
                s = "0" + s
            elif base == 16:
                s = ("0X" if upper else "0x") + s
        if verb == "O":
            s = "0o" + s
        if negative:
            s = "-" + s
        elif f.plus:
            s = "+" + s
        elif f.space:
            s = " " + s
        zero, f.zero = f.zero, False
        self.pad(s)
        f.zero = zero

    def fmt_float(self, v: float, verb: str, prec: int) -> None:
        f = self.f
        if f.prec is not None:
            prec = f.prec
        num = format_float(v, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if f.space and num[0] == "+" and not f.plus:
            num = " " + num[1:]
        if num[1] in "IN":  # Inf and NaN are not padded with zeros
            zero, f.zero = f.zero, False
            if num[1] == "N" and not f.space and not f.plus:
                num = num[1:]
            self.pad(num)
            f.zero = zero
            return
        if f.sharp and verb != "b":
            num = self._sharp_float(num, verb, prec)
        if f.plus or num[0] != "+":
            if f.zero and not f.minus and f.wid and f.wid > len(num):
                self.buf.append(num[0] + "0" * (f.wid - len(num)) + num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    @staticmethod
    def _sharp_float(num: str, verb: str, prec: int) -> str:
        digits = 0
        if verb in "vgGx":
            digits = 6 if prec == -1 else prec
        tail = ""
        body = num
        for i, ch in enumerate(num[1:], 1):
            if ch in "pP" or (ch in "eE" and verb not in "xX"):
                body, tail = num[:i], num[i:]
                break
        has_point = "." in body
        seen_nonzero = False
        for ch in body[1:]:
            if ch == ".":
                continue
            if ch != "0":
                seen_nonzero = True
            if seen_nonzero:
                digits -= 1
        if not has_point:
            if body[1:] == "0":
                digits -= 1
            body += "."
        if digits > 0:
            body += "0" * digits
        return body + tail

    def fmt_string(self, s: str, verb: str) -> None:
        f = self.f
        if verb in "vs":
            if verb == "v" and f.sharp_v:
                self.pad(quote(s))
                return
            if f.prec is not None:
                s = s[:f.prec]
            self.pad(s)
        elif verb in "xX":
            self.fmt_hex_bytes(s.encode("utf-8", "surrogatepass"), verb)
        elif verb == "q":
            if f.prec is not None:
                s = s[:f.prec]
            if f.sharp and can_backquote(s):
                self.pad("`" + s + "`")
            else:
                self.pad(quote(s, ascii_only=f.plus))
        else:
            self.bad_verb(verb, s)

    def fmt_hex_bytes(self, b: bytes, verb: str) -> None:
        f = self.f
        if f.prec is not None:
            b = b[:f.prec]
        digits = "%02X" if verb == "X" else "%02x"
        parts = []
        for i, byte in enumerate(b):
            piece = digits % byte
            if f.sharp and (f.space or i == 0):
                piece = ("0X" if verb == "X" else "0x") + piece
            parts.append(piece)
        self.pad((" " if f.space else "").join(parts))

    def fmt_bool(self, v: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if v else "false")
        else:
            self.bad_verb(verb, v)

    def fmt_int_value(self, v: int, verb: str) -> None:
        if verb in "vd":
            self.fmt_integer(v, 10, verb)
        elif verb == "b":
            self.fmt_integer(v, 2, verb)
        elif verb in "oO":
            self.fmt_integer(v, 8, verb)
        elif verb in "xX":
            self.fmt_integer(v, 16, verb, upper=verb == "X")
        elif verb == "c":
            self.pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd")
        elif verb == "q":
            self.pad(quote_rune(v, ascii_only=self.f.plus))
        elif verb == "U":
            self.fmt_unicode(v)
        else:
            self.bad_verb(verb, v)

    def fmt_unicode(self, v: int) -> None:
        f = self.f
        digits = "%X" % (v & 0xFFFFFFFFFFFFFFFF if v < 0 else v)
        prec = max(4, f.prec or 0)
        s = "U+" + digits.rjust(prec, "0")
        if f.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
            s += " '" + chr(v) + "'"
        zero, f.zero = f.zero, False
        self.pad(s)
        f.zero = zero

    def fmt_float_value(self, v: float, verb: str) -> None:
        if verb == "v":
            self.fmt_float(v, "g", -1)
        elif verb in "bgGxX":
            self.fmt_float(v, verb, -1)
        elif verb in "feE":
            self.fmt_float(v, verb, 6)
        elif verb == "F":
            self.fmt_float(v, "f", 6)
        else:
            self.bad_verb(verb, v)

    def fmt_complex(self, v: complex, verb: str) -> None:
        if verb not in "vbgGxXfFeE":
            self.bad_verb(verb, v)
            return
        plus = self.f.plus
        self.buf.append("(")
        self.fmt_float_value(v.real, verb)
        self.f.plus = True
        self.fmt_float_value(v.imag, verb)
        self.buf.append("i)")
        self.f.plus = plus

    # -- any value --------------------------------------------------------------------------

    def print_arg(self, arg: Any, verb: str, depth: int = 0) -> None:
        if arg is None:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
            return
        if verb == "T":
            self.pad(type_name(arg) or "<nil>")
            return
        if verb == "p":
            self.fmt_pointer(arg, verb)
            return
        if isinstance(arg, bool):
            self.fmt_bool(arg, verb)
        elif isinstance(arg, int):
            self.fmt_int_value(int(arg), verb)
        elif isinstance(arg, float):
            self.fmt_float_value(arg, verb)
        elif isinstance(arg, complex):
            self.fmt_complex(arg, verb)
        elif isinstance(arg, str):
            self.fmt_string(str(arg), verb)
        elif isinstance(arg, Stringer) and verb in "vsxXq":
            self.fmt_string(arg.string(), verb)
        else:
            self.print_value(arg, verb, depth)

    def print_value(self, v: Any, verb: str, depth: int) -> None:
        if depth > 0 and v is not None and not isinstance(v, (dict, list, tuple, GoStruct)):
            self.print_arg(v, verb, depth)
            return
        if v is None:
            self.buf.append("<nil>")
        elif isinstance(v, dict):
            self.buf.append("map[")
            items = sorted(v.items(), key=_sort_key)
            for i, (key, value) in enumerate(items):
                if i:
                    self.buf.append(" ")
                self.print_value(key, verb, depth + 1)
                self.buf.append(":")
                self.print_value(value, verb, depth + 1)
            self.buf.append("]")
        elif isinstance(v, (list, tuple)):
            self.buf.append("[")
            for i, item in enumerate(v):
                if i:
                    self.buf.append(" ")
                if isinstance(item, GoStruct) and item.pointer:
                    self.fmt_pointer(item, verb)
                else:
                    self.print_value(item, verb, depth + 1)
            self.buf.append("]")
        elif isinstance(v, GoStruct):
            if v.pointer and depth > 0:
                self.fmt_pointer(v, verb)
                return
            self.buf.append("&{" if v.pointer else "{")
            for i, name in enumerate(v.order):
                if i:
                    self.buf.append(" ")
                if self.f.plus_v:
                    self.buf.append(name + ":")
                self.print_value(v.fields[name], verb, depth + 1)
            self.buf.append("}")
        else:
            self.print_arg(v, verb, depth)

    def fmt_pointer(self, v: Any, verb: str) -> None:
        # a stable stand-in for an address: Go prints where the value lives, which no reader relies on
        address = 0xC000010000 + (id(v) % 0x100000) * 16
        if verb in "vp":
            self.pad("0x%x" % address)
        elif verb in "xXdob":
            self.fmt_integer(address, {"x": 16, "X": 16, "d": 10, "o": 8, "b": 2}[verb], verb, upper=verb == "X")
        else:
            self.bad_verb(verb, v)

    def bad_verb(self, verb: str, arg: Any) -> None:
        self.buf.append("%!" + verb + "(")
        self.typed_value(arg)
        self.buf.append(")")

    def typed_value(self, arg: Any) -> None:
        """float64=42, or <nil>: how fmt names a value it could not use."""
        if arg is None:
            self.buf.append("<nil>")
        else:
            self.buf.append(str(type_name(arg)) + "=")
            self.print_arg(arg, "v")


def _sort_key(item: Tuple[Any, Any]) -> Any:
    """fmt sorts a map by key: numbers by value, strings bytewise, false before true."""
    key = item[0]
    if isinstance(key, str):
        return (1, key.encode("utf-8", "surrogatepass"))
    if isinstance(key, (int, float)):
        return (0, key if not (isinstance(key, float) and math.isnan(key)) else -math.inf)
    return (2, str(key))


def _parse_num(s: str, start: int, end: int) -> Tuple[int, bool, int]:
    """Go's parsenum: (number, whether there was one, where parsing goes on); a number past a
    million is no number and consumes the rest."""
    num, isnum, i = 0, False, start
    while i < end and "0" <= s[i] <= "9":
        if num > _TOO_LARGE:
            return 0, False, end
        num, isnum, i = num * 10 + int(s[i]), True, i + 1
    return num, isnum, i


class _Format:
    """One Sprintf: the format, the arguments and where it is in both."""

    def __init__(self, fmt: str, args: List[Any]):
        self.fmt, self.args = fmt, args
        self.p = _Printer()
        self.arg_num = 0
        self.reordered = False
        self.good_arg_num = True

    def arg_number(self, i: int) -> Tuple[int, bool]:
        """An explicit [n] at fmt[i]: where parsing goes on, and whether one was there."""
        fmt = self.fmt
        if i >= len(fmt) or fmt[i] != "[":
            return i, False
        self.reordered = True
        close = fmt.find("]", i + 1) if len(fmt) - i >= 3 else -1
        if close < 0:
            self.good_arg_num = False
            return i + 1, False
        num, ok, after = _parse_num(fmt, i + 1, close)
        if not ok or after != close:
            self.good_arg_num = False
            return close + 1, False
        if 0 <= num - 1 < len(self.args):
            self.arg_num = num - 1
            return close + 1, True
        self.good_arg_num = False
        return close + 1, True

    def int_from_arg(self) -> Tuple[int, bool]:
        if self.arg_num >= len(self.args):
            return 0, False
        arg = self.args[self.arg_num]
        self.arg_num += 1
        if isinstance(arg, bool) or not isinstance(arg, int) or abs(arg) > _TOO_LARGE:
            return 0, False
        return int(arg), True

    def flags(self, i: int) -> int:
        fmt, f = self.fmt, self.p.f
        while i < len(fmt) and fmt[i] in "#0+- ":
            c = fmt[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = not f.minus  # only to the left
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus, f.zero = True, False
            else:
                f.space = True
            i += 1
        return i

    def width(self, i: int, after_index: bool) -> Tuple[int, bool]:
        fmt, f = self.fmt, self.p.f
        if i < len(fmt) and fmt[i] == "*":
            wid, ok = self.int_from_arg()
            if not ok:
                self.p.buf.append("%!(BADWIDTH)")
            f.wid = wid if ok else None
            if ok and wid < 0:
                f.wid, f.minus, f.zero = -wid, True, False
            return i + 1, False
        wid, ok, i = _parse_num(fmt, i, len(fmt))
        f.wid = wid if ok else None
        if after_index and ok:  # "%[3]2d"
            self.good_arg_num = False
        return i, after_index

    def precision(self, i: int, after_index: bool) -> Tuple[int, bool]:
        fmt, f = self.fmt, self.p.f
        if not (i + 1 < len(fmt) and fmt[i] == "."):
            return i, after_index
        if after_index:  # "%[3].2d"
            self.good_arg_num = False
        i, after_index = self.arg_number(i + 1)
        if i < len(fmt) and fmt[i] == "*":
            prec, ok = self.int_from_arg()
            if prec < 0:
                prec, ok = 0, False
            f.prec = prec if ok else None
            if not ok:
                self.p.buf.append("%!(BADPREC)")
            return i + 1, False
        prec, ok, i = _parse_num(fmt, i, len(fmt))
        f.prec = prec if ok else 0
        return i, after_index

    def verb(self, i: int) -> int:
        """Reads one directive starting after its '%'; returns where the next text begins."""
        fmt, end, p = self.fmt, len(self.fmt), self.p
        p.f = f = _Flags()
        i = self.flags(i)
        i, after_index = self.arg_number(i)
        i, after_index = self.width(i, after_index)
        i, after_index = self.precision(i, after_index)
        if not after_index:
            i, after_index = self.arg_number(i)
        if i >= end:
            p.buf.append("%!(NOVERB)")
            return end
        verb = fmt[i]
        if verb == "%":
            p.buf.append("%")
        elif not self.good_arg_num:
            p.buf.append("%!" + verb + "(BADINDEX)")
        elif self.arg_num >= len(self.args):
            p.buf.append("%!" + verb + "(MISSING)")
        else:
            arg = self.args[self.arg_num]
            self.arg_num += 1
            if verb == "v":
                f.sharp_v, f.sharp = f.sharp, False
                f.plus_v, f.plus = f.plus, False
            if verb == "w":  # only Errorf wraps
                p.bad_verb(verb, arg)
            else:
                p.print_arg(arg, verb)
        return i + 1

    def run(self) -> str:
        fmt, p = self.fmt, self.p
        i, end = 0, len(fmt)
        while i < end:
            self.good_arg_num = True
            j = fmt.find("%", i)
            if j < 0:
                p.buf.append(fmt[i:])
                break
            p.buf.append(fmt[i:j])
            i = self.verb(j + 1)
        if not self.reordered and self.arg_num < len(self.args):
            p.f = _Flags()
            p.buf.append("%!(EXTRA ")
            for k, arg in enumerate(self.args[self.arg_num:]):
                if k:
                    p.buf.append(", ")
                p.typed_value(arg)
            p.buf.append(")")
        return "".join(p.buf)


def sprintf(fmt: str, args: List[Any]) -> str:
    """fmt.Sprintf."""
    return _Format(fmt, list(args)).run()


def sprint(args: List[Any]) -> str:
    """fmt.Sprint: a space between two operands when neither is a string."""
    p = _Printer()
    prev_string = False
    for i, arg in enumerate(args):
        is_string = arg is not None and kind(arg) == "string" and not isinstance(arg, Stringer)
        if i > 0 and not is_string and not prev_string:
            p.buf.append(" ")
        p.print_arg(arg, "v")
        prev_string = is_string
    return "".join(p.buf)


def sprintln(args: List[Any]) -> str:
    """fmt.Sprintln: always a space between operands, and a newline."""
    p = _Printer()
    for i, arg in enumerate(args):
        if i:
            p.buf.append(" ")
        p.print_arg(arg, "v")
    p.buf.append("\n")
    return "".join(p.buf)


__all__ = ["sprint", "sprintf", "sprintln"]
