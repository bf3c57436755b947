"""PromQL's tokens, as Prometheus 2.42's lexer makes them: case-insensitive keywords,
numbers in every form Go's strconv takes from PromQL (hex, octal-looking, exponents, Inf,
NaN), durations such as 1h30m (units in order, each once), strings with Go's escapes in
"..." and '...' and raw `...`, and # comments to the end of the line."""

from __future__ import annotations

import re
from typing import List, NamedTuple

from ..timefmt import parse_duration  # durations are read the same everywhere

KEYWORDS = frozenset({"and", "or", "unless", "atan2", "by", "without", "on", "ignoring", "group_left",
                      "group_right", "bool", "offset"})
AGGREGATORS = frozenset({"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
                         "count_values", "quantile"})

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*)
  | (?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.]))
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.]))
  | (?P<string>"|'|`)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=,(){}\[\]@:])
""", re.X)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


class PromQLError(ValueError):
    """An invalid expression; the message starts with line:column, as Prometheus's do."""


class Token(NamedTuple):
    kind: str  # number duration string ident keyword op eof
    value: str  # keywords lower-cased; strings unquoted
    pos: int  # offset in the text
    text: str  # as written


def position(text: str, pos: int) -> str:
    """line:column (1-based) of offset `pos`."""
    line = text.count("\n", 0, pos) + 1
    return f"{line}:{pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def tokenize(text: str) -> List[Token]:
    tokens: List[Token] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if not m:
            raise PromQLError(f"{position(text, pos)}: parse error: unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "string":
            value, end = _string(text, pos)
            tokens.append(Token("string", value, pos, text[pos:end]))
            pos = end
            continue
        word = m.group()
        if kind == "ident":
            lowered = word.lower()
            if lowered in KEYWORDS or lowered in AGGREGATORS:
                tokens.append(Token("keyword", lowered, pos, word))
            elif lowered in ("inf", "nan"):
                tokens.append(Token("number", lowered, pos, word))
            else:
                tokens.append(Token("ident", word, pos, word))
        elif kind == "duration":
            try:
                parse_duration(word)
            except ValueError as e:
                raise PromQLError(f"{position(text, pos)}: parse error: {e}") from None
            tokens.append(Token("duration", word, pos, word))
        else:
            tokens.append(Token(kind, word, pos, word))
        pos = m.end()
    tokens.append(Token("eof", "", n, ""))
    return tokens


def _string(text: str, start: int):
    """The unquoted value of the string opening at `start`, and where it ends."""
    quote = text[start]
    if quote == "`":
        end = text.find("`", start + 1)
        if end < 0:
            raise PromQLError(f"{position(text, start)}: parse error: unterminated raw string")
        return text[start + 1:end], end + 1
    out: List[str] = []
    i = start + 1
    while True:
        if i >= len(text) or text[i] == "\n":
            raise PromQLError(f"{position(text, start)}: parse error: unterminated quoted string")
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        value, i = _escape(text, i + 1, quote)
        out.append(value)


def _escape(text: str, i: int, quote: str):
    """One escape sequence after the backslash at i-1 (Go's rules): its value and the next offset."""
    c = text[i] if i < len(text) else ""
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 1
    if c == quote:
        return c, i + 1
    digits = {"x": (16, 2), "u": (16, 4), "U": (16, 8)}.get(c)
    if digits is None and c in "01234567":
        digits, i = (8, 3), i - 1
    if digits is None or not c:
        raise PromQLError(f"{position(text, i - 1)}: parse error: unknown escape sequence {chr(92) + c!r}")
    base, count = digits
    chunk = text[i + 1:i + 1 + count]
    try:
        if len(chunk) != count:
            raise ValueError
        value = int(chunk, base)
    except ValueError:
        raise PromQLError(f"{position(text, i - 1)}: parse error: invalid escape sequence") from None
    if base == 8 and value > 255 or value > 0x10FFFF or 0xD800 <= value < 0xE000:
        raise PromQLError(f"{position(text, i - 1)}: parse error: escape sequence is an invalid Unicode code point")
    return chr(value), i + 1 + count
