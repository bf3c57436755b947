"""Template functions as Go declares them, and text/template's builtins.

A Func carries its Go signature (parameter types, a variadic element type, whether it can
return an error) so the executor checks arguments as Go's reflection does: `wrong number of
args for humanize: want 1 got 2`, `wrong type for value; expected string; got float64`. A
function signals Go's error result by raising FuncError; its text follows "error calling X: ".
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Callable, Optional, Sequence

from .gofmt import sprint, sprintf, sprintln
from .gotypes import ANY, VALUE, Typed, kind, truth, type_name
from .strconv import is_print


class FuncError(Exception):
    """The error a Go function returns; the executor wraps it as `error calling NAME: ...`."""


class Func:
    """A function a template may call: its Go parameter types, and the Python that does it."""

    def __init__(self, call: Callable[..., Any], params: Sequence[str] = (), variadic: Optional[str] = None,
                 results: int = 1):
        self.call = call
        self.params = tuple(params)
        self.variadic = variadic
        self.results = results  # 1, or 2 for (value, error): the second never reaches the template

    def param_type(self, i: int) -> str:
        if i < len(self.params):
            return self.params[i]
        return self.variadic or ANY


# -- comparison (eq, ne, lt, le, gt, ge) ---------------------------------------------------------

_BAD_TYPE = "invalid type for comparison"
_BAD_COMPARISON = "incompatible types for comparison"


def _basic_kind(v: Any) -> Optional[str]:
    k = kind(v)
    return k if k in ("bool", "int", "uint", "float", "complex", "string") else None


def _int_uint_equal(a: Any, b: Any, ka: str, kb: str) -> Optional[bool]:
    if ka == "int" and kb == "uint":
        return a >= 0 and a == b
    if ka == "uint" and kb == "int":
        return b >= 0 and a == b
    return None


def _eq(arg1: Any, *rest: Any) -> bool:
    if not rest:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in rest:
        k2 = _basic_kind(arg)
        if k1 != k2:
            mixed = _int_uint_equal(arg1, arg, k1 or "", k2 or "")
            if mixed is None:
                if arg1 is not None and arg is not None:
                    raise FuncError(_BAD_COMPARISON)
                truth_ = False
            else:
                truth_ = mixed
        elif k1 is None:
            if arg1 is None or arg is None:
                truth_ = (arg1 is None) == (arg is None)
            elif kind(arg1) in ("map", "slice", "func"):
                raise FuncError(f"non-comparable type {sprint([arg1])}: {type_name(arg1)}")
            else:
                truth_ = arg1 is arg
        else:
            truth_ = arg1 == arg
        if truth_:
            return True
    return False


def _lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if k1 is None or k2 is None:
        raise FuncError(_BAD_TYPE)
    if k1 != k2:
        if k1 == "int" and k2 == "uint":
            return arg1 < 0 or arg1 < arg2
        if k1 == "uint" and k2 == "int":
            return arg2 >= 0 and arg1 < arg2
        raise FuncError(_BAD_COMPARISON)
    if k1 in ("bool", "complex"):
        raise FuncError(_BAD_TYPE)
    if k1 == "string":
        return str(arg1).encode("utf-8", "surrogatepass") < str(arg2).encode("utf-8", "surrogatepass")
    return arg1 < arg2


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


# -- len, index, slice ---------------------------------------------------------------------------

def _length(item: Any) -> int:
    if item is None:
        raise FuncError("len of nil pointer")
    k = kind(item)
    if k == "string":
        return len(str(item).encode("utf-8", "surrogatepass"))
    if k in ("map", "slice"):
        return len(item)
    raise FuncError(f"len of type {type_name(item)}")


def _index_arg(index: Any, cap: int) -> int:
    k = kind(index)
    if k == "invalid":
        raise FuncError("cannot index slice/array with nil")
    if k not in ("int", "uint"):
        raise FuncError(f"cannot index slice/array with type {type_name(index)}")
    x = int(index)
    if x < 0 or x > cap:
        raise FuncError(f"index out of range: {x}")
    return x


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise FuncError("index of untyped nil")
    for index in indexes:
        k = kind(item)
        if k in ("slice", "string"):
            seq = str(item).encode("utf-8", "surrogatepass") if k == "string" else item
            x = _index_arg(index, len(seq))
            if x == len(seq):
                raise FuncError(f"index out of range: {x}")
            item = Typed(seq[x], "uint8") if k == "string" else seq[x]
        elif k == "map":
            key_type = getattr(item, "key", "string")
            if index is None:
                raise FuncError(f"value is nil; should be of type {key_type}")
            if type_name(index) != key_type and key_type != ANY:
                raise FuncError(f"value has type {type_name(index)}; should be {key_type}")
            item = item[index] if index in item else getattr(item, "zero", lambda: None)()
        elif item is None:
            raise FuncError("index of nil pointer")
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    k = kind(item)
    if k == "string":
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        seq: Any = str(item).encode("utf-8", "surrogatepass")
    elif k == "slice":
        seq = item
    else:
        raise FuncError(f"can't slice item of type {type_name(item)}")
    cap = len(seq)
    idx = [0, len(seq)]
    for i, index in enumerate(indexes):
        x = _index_arg(index, cap)
        if i < 2:
            idx[i] = x
        else:
            idx.append(x)
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(idx) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    out = seq[idx[0]:idx[1]]
    if k == "string":
        return out.decode("utf-8", "surrogateescape")
    return type(item)(out, item.go_type, item.elem) if hasattr(item, "go_type") else list(out)


# -- escaping ------------------------------------------------------------------------------------

def _eval_args(args: Sequence[Any]) -> str:
    if len(args) == 1 and kind(args[0]) == "string" and not hasattr(args[0], "string"):
        return str(args[0])
    return sprint(list(args))


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}


def html_escape(s: str) -> str:
    return "".join(_HTML.get(c, c) for c in s)


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def js_escape(s: str) -> str:
    out = []
    for c in s:
        if c in _JS:
            out.append(_JS[c])
        elif ord(c) < 0x20:
            out.append("\\u%04X" % ord(c))
        elif ord(c) < 0x80 or is_print(c):
            out.append(c)
        else:
            out.append("\\u%04X" % ord(c))
    return "".join(out)


def url_query_escape(s: str) -> str:
    return urllib.parse.quote_plus(s.encode("utf-8", "surrogatepass"), safe="-_.~")


def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, list(args))


def _not(arg: Any) -> bool:
    return not truth(arg)


def _call(fn: Any, *args: Any) -> Any:
    if fn is None:
        raise FuncError("call of nil")
    if not isinstance(fn, Func):
        raise FuncError(f"non-function of type {type_name(fn)}")
    return fn.call(*args)


BUILTINS = {
    "and": Func(lambda *a: a[-1], (VALUE,), VALUE),  # short-circuits: the executor evaluates it
    "or": Func(lambda *a: a[-1], (VALUE,), VALUE),
    "not": Func(_not, (VALUE,)),
    "len": Func(_length, (VALUE,), results=2),
    "index": Func(_index, (VALUE,), VALUE, results=2),
    "slice": Func(_slice, (VALUE,), VALUE, results=2),
    "print": Func(lambda *a: sprint(list(a)), (), ANY),
    "printf": Func(_printf, ("string",), ANY),
    "println": Func(lambda *a: sprintln(list(a)), (), ANY),
    "html": Func(lambda *a: html_escape(_eval_args(a)), (), ANY),
    "js": Func(lambda *a: js_escape(_eval_args(a)), (), ANY),
    "urlquery": Func(lambda *a: url_query_escape(_eval_args(a)), (), ANY),
    "eq": Func(_eq, (VALUE,), VALUE, results=2),
    "ne": Func(lambda a, b: not _eq(a, b), (VALUE, VALUE), results=2),
    "lt": Func(_lt, (VALUE, VALUE), results=2),
    "le": Func(_le, (VALUE, VALUE), results=2),
    "gt": Func(lambda a, b: not _le(a, b), (VALUE, VALUE), results=2),
    "ge": Func(lambda a, b: not _lt(a, b), (VALUE, VALUE), results=2),
    "call": Func(_call, (VALUE,), VALUE, results=2),
}


__all__ = ["BUILTINS", "Func", "FuncError", "html_escape", "js_escape", "url_query_escape"]
