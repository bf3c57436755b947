"""Parse the PromQL subset that rules may use; reject everything else with its position.

Supported: selectors with =, !=, =~, !~; range selectors; rate, irate, increase, delta,
deriv, predict_linear, {avg,min,max,sum,count,stddev,quantile}_over_time, absent,
histogram_quantile, clamp_min, clamp_max; sum/avg/min/max/count with by/without; + - * / % ^;
== != > < >= <= (with bool); and, or, unless; on/ignoring one-to-one matching.
Precedence and associativity are PromQL's.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from .. import regex
from .ast import (MATRIX, SCALAR, VECTOR, Aggregate, Binary, Call, Matcher, Matching, MatrixSelector, Number,
                  Node, Unary, VectorSelector, depth)

# name -> argument types; the result is a vector
FUNCTIONS = {
    "rate": (MATRIX,), "irate": (MATRIX,), "increase": (MATRIX,), "delta": (MATRIX,), "deriv": (MATRIX,),
    "predict_linear": (MATRIX, SCALAR),
    "avg_over_time": (MATRIX,), "min_over_time": (MATRIX,), "max_over_time": (MATRIX,),
    "sum_over_time": (MATRIX,), "count_over_time": (MATRIX,), "stddev_over_time": (MATRIX,),
    "quantile_over_time": (SCALAR, MATRIX),
    "absent": (VECTOR,), "histogram_quantile": (SCALAR, VECTOR),
    "clamp_min": (VECTOR, SCALAR), "clamp_max": (VECTOR, SCALAR),
}
AGGREGATIONS = ("sum", "avg", "min", "max", "count")
COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
SET_OPS = ("and", "or", "unless")
# binding power: higher binds tighter (PromQL: ^ > * / % > + - > comparisons > and unless > or)
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3,
              "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}
UNSUPPORTED_WORDS = {"offset": "the offset modifier", "group_left": "many-to-one matching (group_left)",
                     "group_right": "one-to-many matching (group_right)", "atan2": "atan2"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=,(){}\[\]@])
""", re.X)
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


# Deeper trees would exhaust Python's stack while parsing or evaluating; no sane rule nests
# this deep (a sum of 200 terms is better split into recording rules).
MAX_DEPTH = 200
MAX_LENGTH = 100_000


class PromQLError(ValueError):
    """An expression outside the subset or malformed; the message names the column."""


def _duration(text: str) -> float:
    seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    if seconds > 10 * _UNITS["y"]:
        raise PromQLError(f"duration {text} is longer than 10 years")
    return float(seconds)


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(m.group(1), "\\" + m.group(1)), body)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: List[Tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise PromQLError(f"unexpected character {text[pos]!r} at column {pos + 1}")
            if m.lastgroup != "ws":
                self.tokens.append((m.lastgroup or "", m.group(), pos + 1))
            pos = m.end()
        self.tokens.append(("eof", "", len(text) + 1))
        self.i = 0
        self.nesting = 0

    # -- token helpers -------------------------------------------------------------------------

    def peek(self) -> Tuple[str, str, int]:
        return self.tokens[self.i]

    def next(self) -> Tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: Optional[Tuple[str, str, int]] = None) -> PromQLError:
        tok = tok or self.peek()
        found = "end of expression" if tok[0] == "eof" else repr(tok[1])
        return PromQLError(f"{message} at column {tok[2]} (found {found})")

    def expect(self, value: str) -> None:
        if self.peek()[1] != value:
            raise self.error(f"expected {value!r}")
        self.next()

    def binary_op(self) -> Optional[str]:
        kind, value, _ = self.peek()
        if kind == "op" and value in PRECEDENCE or kind == "ident" and value in SET_OPS:
            return value
        if kind == "ident" and value in UNSUPPORTED_WORDS:
            raise self.error(f"{UNSUPPORTED_WORDS[value]} is not supported")
        return None

    # -- grammar -----------------------------------------------------------------------------

    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek()[0] != "eof":
            raise self.error("unexpected token")
        return node

    def expression(self, min_prec: int) -> Node:
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:
                raise self.error(f"the expression nests more than {MAX_DEPTH} levels deep")
            return self._expression(min_prec)
        finally:
            self.nesting -= 1

    def _expression(self, min_prec: int) -> Node:
        lhs = self.unary()
        while True:
            op = self.binary_op()
            if op is None or PRECEDENCE[op] < min_prec:
                return lhs
            op_tok = self.next()
            bool_mod, matching = self.modifiers(op)
            # ^ is right-associative, everything else left
            rhs = self.expression(PRECEDENCE[op] + (0 if op == "^" else 1))
            lhs = self.check_binary(Binary(op, lhs, rhs, bool_mod, matching), op_tok)

    def modifiers(self, op: str) -> Tuple[bool, Optional[Matching]]:
        bool_mod = False
        if self.peek()[1] == "bool":
            if op not in COMPARISONS:
                raise self.error("bool is only allowed after a comparison")
            self.next()
            bool_mod = True
        matching = None
        if self.peek()[1] in ("on", "ignoring"):
            on = self.next()[1] == "on"
            matching = Matching(on, self.label_list())
        if self.peek()[1] in ("group_left", "group_right"):
            raise self.error(f"{UNSUPPORTED_WORDS[self.peek()[1]]} is not supported")
        return bool_mod, matching

    def check_binary(self, node: Binary, tok: Tuple[str, str, int]) -> Binary:
        lt, rt = node.lhs.type, node.rhs.type
        if MATRIX in (lt, rt):
            raise self.error(f"binary {node.op!r} needs instant vectors or scalars, not a range vector", tok)
        if node.op in SET_OPS and (lt, rt) != (VECTOR, VECTOR):
            raise self.error(f"{node.op!r} is only defined between two instant vectors", tok)
        if node.op in COMPARISONS and lt == rt == SCALAR and not node.bool_mod:
            raise self.error("comparisons between scalars must use bool", tok)
        if node.matching and (lt, rt) != (VECTOR, VECTOR):
            raise self.error("on/ignoring apply only between two instant vectors", tok)
        node.type = SCALAR if lt == rt == SCALAR else VECTOR
        return node

    def unary(self) -> Node:
        kind, value, _ = self.peek()
        if kind == "op" and value in ("-", "+"):
            self.next()
            # unary minus binds looser than ^: -2^2 is -(2^2)
            operand = self.expression(PRECEDENCE["^"])
            if operand.type == MATRIX:
                raise self.error("unary minus needs an instant vector or scalar")
            if value == "+":
                return operand
            if isinstance(operand, Number):
                return Number(-operand.value)
            return Unary("-", operand, operand.type)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        if self.peek()[1] == "[":
            tok = self.next()
            if not isinstance(node, VectorSelector):
                raise self.error("a range [..] applies only to a metric selector (subqueries are not supported)", tok)
            kind, value, _ = self.next()
            if kind != "duration":
                raise self.error("expected a duration such as 5m", self.tokens[self.i - 1])
            if self.peek()[1].startswith(":"):
                raise self.error("subqueries are not supported")
            self.expect("]")
            node = MatrixSelector(node, _duration(value))
        if self.peek()[1] in ("offset", "@"):
            raise self.error("the offset and @ modifiers are not supported")
        return node

    def primary(self) -> Node:
        kind, value, _ = self.peek()
        if kind == "number":
            self.next()
            try:
                return Number(float(int(value, 16)) if value.lower().startswith("0x") else float(value))
            except OverflowError:
                raise self.error("number out of range") from None
        if kind == "op" and value == "(":
            self.next()
            node = self.expression(0)
            self.expect(")")
            return node
        if kind == "op" and value == "{":
            return self.selector("")
        if kind == "ident":
            lowered = value.lower()
            if lowered in ("inf", "nan"):
                self.next()
                return Number(float(lowered))
            following = self.tokens[self.i + 1][1]
            if value in AGGREGATIONS and following in ("(", "by", "without"):
                return self.aggregate()
            if following == "(":
                return self.call()
            if value in UNSUPPORTED_WORDS or value in ("by", "without", "on", "ignoring", "bool") + SET_OPS:
                raise self.error("unexpected keyword")
            self.next()
            return self.selector(value)
        if kind == "string":
            raise self.error("string literals are not supported here")
        raise self.error("expected an expression")

    def selector(self, name: str) -> VectorSelector:
        matchers: List[Matcher] = []
        if self.peek()[1] == "{":
            self.next()
            while self.peek()[1] != "}":
                kind, label, _ = self.next()
                if kind != "ident":
                    raise self.error("expected a label name", self.tokens[self.i - 1])
                op_tok = self.next()
                if op_tok[1] not in ("=", "!=", "=~", "!~"):
                    raise self.error("expected =, !=, =~ or !~", op_tok)
                kind, text, _ = self.next()
                if kind != "string":
                    raise self.error("expected a quoted label value", self.tokens[self.i - 1])
                value = _unquote(text)
                if op_tok[1] in ("=~", "!~"):
                    try:
                        regex.check(value)
                    except regex.RegexError as e:
                        raise self.error(str(e), op_tok) from None
                matchers.append(Matcher(label, op_tok[1], value))
                if self.peek()[1] == ",":
                    self.next()
                elif self.peek()[1] != "}":
                    raise self.error("expected ',' or '}'")
            self.next()
        for m in list(matchers):
            if m.label == "__name__" and m.op == "=" and not name:
                name = m.value
                matchers.remove(m)
        if not name and not any(m.op in ("=", "=~") and m.value and not regex.fullmatch(m.value, "") if m.op == "=~"
                                else m.op == "=" and m.value for m in matchers):
            raise self.error("a selector needs a metric name or a matcher that does not match the empty string")
        return VectorSelector(name, tuple(matchers))

    def label_list(self) -> Tuple[str, ...]:
        self.expect("(")
        labels = []
        while self.peek()[1] != ")":
            kind, value, _ = self.next()
            if kind != "ident":
                raise self.error("expected a label name", self.tokens[self.i - 1])
            labels.append(value)
            if self.peek()[1] == ",":
                self.next()
            elif self.peek()[1] != ")":
                raise self.error("expected ',' or ')'")
        self.next()
        return tuple(labels)

    def aggregate(self) -> Aggregate:
        op = self.next()[1]
        grouping: Tuple[str, ...] = ()
        without = False
        if self.peek()[1] in ("by", "without"):
            without = self.next()[1] == "without"
            grouping = self.label_list()
        self.expect("(")
        expr = self.expression(0)
        if self.peek()[1] == ",":
            raise self.error(f"{op} takes one argument")
        self.expect(")")
        if self.peek()[1] in ("by", "without"):
            if grouping:
                raise self.error("by/without given twice")
            without = self.next()[1] == "without"
            grouping = self.label_list()
        if expr.type != VECTOR:
            raise self.error(f"{op}() needs an instant vector")
        return Aggregate(op, expr, grouping, without)

    def call(self) -> Call:
        name_tok = self.next()
        name = name_tok[1]
        if name not in FUNCTIONS:
            raise self.error(f"function {name!r} is not in the supported PromQL subset", name_tok)
        self.expect("(")
        args = []
        while self.peek()[1] != ")":
            args.append(self.expression(0))
            if self.peek()[1] == ",":
                self.next()
            elif self.peek()[1] != ")":
                raise self.error("expected ',' or ')'")
        self.next()
        wanted = FUNCTIONS[name]
        if len(args) != len(wanted):
            raise self.error(f"{name}() takes {len(wanted)} argument(s), got {len(args)}", name_tok)
        for i, (arg, want) in enumerate(zip(args, wanted)):
            if arg.type != want:
                raise self.error(f"argument {i + 1} of {name}() must be a {want.replace('matrix', 'range vector')}, "
                                 f"got a {arg.type.replace('matrix', 'range vector')}", name_tok)
        return Call(name, args)


def parse(text: str) -> Node:
    """Parse `text` into a syntax tree, or raise PromQLError naming the column."""
    if not text.strip():
        raise PromQLError("empty expression")
    if len(text) > MAX_LENGTH:
        raise PromQLError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are supported")
    node = _Parser(text).parse()
    if depth(node) > MAX_DEPTH:
        raise PromQLError(f"the expression nests more than {MAX_DEPTH} levels deep (a chain of that many "
                          "operators counts as that deep); split it into several rules")
    return node


_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")


def parse_matcher(text: str) -> Matcher:
    """An Alertmanager-style matcher: `alertname=LlmTargetDown`, `severity=~"warning|critical"`."""
    m = _MATCHER.fullmatch(text)
    if not m:
        raise PromQLError(f"invalid matcher {text!r}: use label=value, label!=value, label=~regex or label!~regex")
    label, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = _unquote(value)
    if op in ("=~", "!~"):
        try:
            regex.check(value)
        except regex.RegexError as e:
            raise PromQLError(f"in matcher {text!r}: {e}") from None
    return Matcher(label, op, value)
