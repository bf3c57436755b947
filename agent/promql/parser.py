"""Parse PromQL as Prometheus 2.42 does: every operator, modifier (offset, negative offset,
@ with start()/end(), subqueries), vector matching (on/ignoring, group_left/group_right with
label lists), every aggregation and function of that version, with the same type checks.
Errors start with line:column and say what was expected, as Prometheus's do.

Precedence, loosest first: or; and unless; == != <= < >= >; + -; * / % atan2; ^ (right
associative); unary minus binds like * (so -2^2 is -4).
"""

from __future__ import annotations

import math
import re
from typing import List, Optional, Tuple

from .. import regex
from .ast import (MATRIX, SCALAR, STRING, VECTOR, Aggregate, At, Binary, Call, Matcher, Matching, MatrixSelector, Node,
                  Number, Paren, String, Subquery, Unary, VectorSelector, depth)
from .lexer import AGGREGATORS, PromQLError, Token, parse_duration, position, tokenize

__all__ = ["PromQLError", "parse", "parse_matcher", "parse_series", "FUNCTIONS", "AGGREGATORS", "MAX_DEPTH"]

V, M, S, STR = VECTOR, MATRIX, SCALAR, STRING
_MATH = ("abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "sgn", "acos", "acosh", "asin", "asinh", "atan",
         "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "timestamp", "sort", "sort_desc",
         "histogram_count", "histogram_sum")
_RANGE = ("rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "avg_over_time",
          "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "stddev_over_time", "stdvar_over_time",
          "last_over_time", "present_over_time", "absent_over_time")
_DATES = ("day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year")
# name -> (argument types, how many trailing ones are optional, variadic, result type)
FUNCTIONS = {
    **{f: ((V,), 0, False, V) for f in _MATH},
    **{f: ((M,), 0, False, V) for f in _RANGE},
    **{f: ((V,), 1, False, V) for f in _DATES},
    "absent": ((V,), 0, False, V), "scalar": ((V,), 0, False, S), "vector": ((S,), 0, False, V),
    "time": ((), 0, False, S), "pi": ((), 0, False, S),
    "round": ((V, S), 1, False, V), "clamp": ((V, S, S), 0, False, V),
    "clamp_min": ((V, S), 0, False, V), "clamp_max": ((V, S), 0, False, V),
    "predict_linear": ((M, S), 0, False, V), "quantile_over_time": ((S, M), 0, False, V),
    "holt_winters": ((M, S, S), 0, False, V), "histogram_quantile": ((S, V), 0, False, V),
    "histogram_fraction": ((S, S, V), 0, False, V),
    "label_replace": ((V, STR, STR, STR, STR), 0, False, V), "label_join": ((V, STR, STR, STR), 1, True, V),
}
COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
SET_OPS = ("and", "or", "unless")
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3,
              "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_TYPE_NAMES = {V: "instant vector", M: "range vector", S: "scalar", STR: "string"}
_METRIC_KEYWORDS = AGGREGATORS | {"by", "without", "offset", "and", "or", "unless"}
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Deeper trees would exhaust Python's stack while parsing or evaluating; no sane rule nests
# this deep (a sum of 200 terms is better split into recording rules).
MAX_DEPTH = 200
MAX_LENGTH = 100_000


def _number(text: str) -> float:
    """A PromQL number as Go reads it: strconv.ParseInt(base 0) first (so 010 is octal 8,
    0x1f is 31), then ParseFloat."""
    lowered = text.lower()
    if lowered in ("inf", "nan"):
        return float(lowered)
    try:
        if lowered.startswith("0x"):
            return float(int(lowered, 16))
        if len(text) > 1 and text[0] == "0" and text.isdigit():
            return float(int(text, 8))
        if text.isdigit():
            return float(int(text))
    except ValueError:
        pass  # 09: not octal, read as a float as Go does
    return float(text)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    # -- token helpers -------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def at(self, *values: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "keyword") and tok.value in values

    def error(self, message: str, tok: Optional[Token] = None) -> PromQLError:
        tok = tok or self.peek()
        return PromQLError(f"{position(self.text, tok.pos)}: parse error: {message}")

    def unexpected(self, expected: str, tok: Optional[Token] = None) -> PromQLError:
        tok = tok or self.peek()
        if tok.kind == "eof" and self._open_parens() > 0:
            return self.error("unclosed left parenthesis", tok)  # Prometheus' lexer says so before its parser
        found = "end of input" if tok.kind == "eof" else f"{tok.kind} {tok.text!r}"
        return self.error(f"unexpected {found}, expected {expected}", tok)

    def _open_parens(self) -> int:
        ops = [t.value for t in self.tokens[:self.i] if t.kind == "op"]
        return ops.count("(") - ops.count(")")

    def expect(self, value: str, what: str = "") -> Token:
        if not self.at(value):
            raise self.unexpected(what or repr(value))
        return self.next()

    # -- grammar -----------------------------------------------------------------------------

    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek().kind != "eof":
            raise self.unexpected("an operator or the end of the expression")
        return node

    def expression(self, min_prec: int) -> Node:
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:
                raise self.error(f"the expression nests more than {MAX_DEPTH} levels deep")
            lhs = self.unary()
            while True:
                tok = self.peek()
                op = tok.value if tok.kind in ("op", "keyword") and tok.value in PRECEDENCE else None
                if op is None or PRECEDENCE[op] < min_prec:
                    return lhs
                self.next()
                bool_mod, matching = self.modifiers(op)
                # ^ is right-associative, everything else left
                rhs = self.expression(PRECEDENCE[op] + (0 if op == "^" else 1))
                lhs = self.check_binary(Binary(op, lhs, rhs, bool_mod, matching), tok)
        finally:
            self.nesting -= 1

    def modifiers(self, op: str) -> Tuple[bool, Optional[Matching]]:
        bool_mod = False
        if self.at("bool"):
            if op not in COMPARISONS:
                raise self.error("bool modifier can only be used on comparison operators")
            self.next()
            bool_mod = True
        matching = None
        if self.at("on", "ignoring"):
            on = self.next().value == "on"
            matching = Matching(on, self.label_list(), "many-to-many" if op in SET_OPS else "one-to-one")
        if self.at("group_left", "group_right"):
            side = self.next().value
            if op in SET_OPS:
                raise self.error(f"no grouping allowed for {op!r} operation")
            if matching is None:
                raise self.error(f"{side} must follow on(...) or ignoring(...)")
            include = self.label_list() if self.at("(") else ()
            for label in include:
                if matching.on and label in matching.labels:
                    raise self.error(f"label {label!r} must not occur in ON and GROUP clause at once")
            matching.card = "many-to-one" if side == "group_left" else "one-to-many"
            matching.include = include
        if matching is None and op in SET_OPS:
            matching = Matching(False, (), "many-to-many")
        return bool_mod, matching

    def check_binary(self, node: Binary, tok: Token) -> Binary:
        lt, rt = node.lhs.type, node.rhs.type
        if lt not in (SCALAR, VECTOR) or rt not in (SCALAR, VECTOR):
            raise self.error("binary expression must contain only scalar and instant vector types", tok)
        if node.op in SET_OPS and SCALAR in (lt, rt):
            raise self.error(f"set operator {node.op!r} not allowed in binary scalar expression", tok)
        if node.op in COMPARISONS and lt == rt == SCALAR and not node.bool_mod:
            raise self.error("comparisons between scalars must use BOOL modifier", tok)
        if node.matching is not None and node.op not in SET_OPS and SCALAR in (lt, rt):
            raise self.error("vector matching only allowed between instant vectors", tok)
        node.type = SCALAR if lt == rt == SCALAR else VECTOR
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("-", "+"):
            self.next()
            # unary minus binds like *: -2^2 is -(2^2), -a*b is (-a)*b
            operand = self.expression(PRECEDENCE["^"])
            if operand.type not in (SCALAR, VECTOR):
                raise self.error("unary expression only allowed on expressions of type scalar or instant vector", tok)
            if tok.value == "+":
                return operand
            if isinstance(operand, Number):
                return Number(-operand.value)
            return Unary("-", operand, operand.type)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("["):
                node = self.range_suffix(node)
            elif self.at("offset"):
                node = self.offset(node)
            elif self.at("@"):
                node = self.at_modifier(node)
            else:
                return node

    def range_suffix(self, node: Node) -> Node:
        tok = self.next()
        rng = self.duration("a duration such as 5m")
        if self.at(":"):
            self.next()
            step = self.duration("a duration or ']'") if self.peek().kind == "duration" else None
            self.expect("]", "']'")
            if step == 0:
                raise self.error("zero or negative step in a subquery is not accepted", tok)
            if node.type != VECTOR:
                raise self.error(f"subquery is only allowed on instant vector, got {_TYPE_NAMES[node.type]}", tok)
            if rng <= 0:
                raise self.error("subquery range must be greater than 0", tok)
            return Subquery(node, rng, step or 0.0)
        self.expect("]", "']' or ':'")
        if not isinstance(node, VectorSelector):
            raise self.error("ranges only allowed for vector selectors", tok)
        if node.offset or node.at:
            raise self.error("no offset or @ modifiers allowed before range", tok)
        if rng <= 0:
            raise self.error("range must be greater than 0", tok)
        return MatrixSelector(node, rng)

    def duration(self, expected: str) -> float:
        tok = self.peek()
        if tok.kind != "duration":
            raise self.unexpected(expected)
        self.next()
        return parse_duration(tok.value)

    def _modifiable(self, node: Node, what: str, tok: Token):
        target = node.vector if isinstance(node, MatrixSelector) else node
        if not isinstance(target, (VectorSelector, Subquery)):
            raise self.error(f"{what} modifier must be preceded by an instant vector selector or range vector "
                             "selector or a subquery", tok)
        return target

    def offset(self, node: Node) -> Node:
        tok = self.next()
        target = self._modifiable(node, "offset", tok)
        sign = 1.0
        if self.at("-"):
            self.next()
            sign = -1.0
        seconds = sign * self.duration("a duration such as 5m")
        if seconds == 0:
            raise self.error("duration must be greater than 0", tok)
        if target.offset:
            raise self.error("offset may not be set multiple times", tok)
        target.offset = seconds
        return node

    def at_modifier(self, node: Node) -> Node:
        tok = self.next()
        target = self._modifiable(node, "@", tok)
        nxt = self.peek()
        if nxt.kind == "ident" and nxt.value in ("start", "end"):
            self.next()
            self.expect("(")
            self.expect(")")
            at = At(nxt.value)
        else:
            sign = 1.0
            if self.at("-", "+"):
                sign = -1.0 if self.next().value == "-" else 1.0
            num = self.peek()
            if num.kind != "number":
                raise self.unexpected("a timestamp, start() or end() after @")
            self.next()
            value = sign * _number(num.value)
            if not math.isfinite(value):
                raise self.error("timestamp out of bounds for @ modifier", num)
            at = At("time", value)
        if target.at is not None:
            raise self.error("@ <timestamp> may not be set multiple times", tok)
        target.at = at
        return node

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "number":
            self.next()
            try:
                return Number(_number(tok.value))
            except (ValueError, OverflowError):
                raise self.error(f"error parsing number: {tok.text}", tok) from None
        if tok.kind == "string":
            self.next()
            return String(tok.value)
        if tok.kind == "op" and tok.value == "(":
            self.next()
            inner = self.expression(0)
            self.expect(")", "')' or an operator")
            return Paren(inner, inner.type)
        if tok.kind == "op" and tok.value == "{":
            return self.selector("", tok)
        if tok.kind == "keyword" and tok.value in AGGREGATORS and (
                self.peek(1).kind in ("op", "keyword") and self.peek(1).value in ("(", "by", "without")):
            return self.aggregate()
        if tok.kind == "keyword" and tok.value in _METRIC_KEYWORDS:  # Prometheus reads `sum` alone as a metric name
            self.next()
            return self.selector(tok.text, tok)
        if tok.kind == "ident":
            if self.peek(1).kind == "op" and self.peek(1).value == "(":
                return self.call()
            self.next()
            return self.selector(tok.value, tok)
        if tok.kind == "duration":
            raise self.error(f"unexpected duration {tok.text!r}", tok)
        raise self.unexpected("an expression")

    def label_name(self, what: str = "a label name") -> Token:
        tok = self.peek()
        if tok.kind not in ("ident", "keyword") or not _LABEL.match(tok.text):
            raise self.unexpected(what)
        return self.next()

    def selector(self, name: str, start: Token) -> VectorSelector:
        matchers: List[Matcher] = []
        if self.at("{"):
            self.next()
            while not self.at("}"):
                label = self.label_name("a label matcher or '}'").text
                op_tok = self.peek()
                if not (op_tok.kind == "op" and op_tok.value in ("=", "!=", "=~", "!~")):
                    raise self.unexpected("one of '=', '!=', '=~' or '!~'")
                self.next()
                val = self.peek()
                if val.kind != "string":
                    raise self.unexpected("a quoted label value")
                self.next()
                if op_tok.value in ("=~", "!~"):
                    try:
                        regex.check(val.value)
                    except regex.RegexError as e:
                        raise self.error(str(e), val) from None
                matchers.append(Matcher(label, op_tok.value, val.value))
                if self.at(","):
                    self.next()
                elif not self.at("}"):
                    raise self.unexpected("',' or '}'")
            self.next()
        named = [m for m in matchers if m.label == "__name__"]
        if name and named:
            raise self.error(f"metric name must not be set twice: {name!r} or {named[0].value!r}", start)
        if not name and any(m.op == "=" for m in named):
            first = next(m for m in named if m.op == "=")
            name = first.value
            matchers.remove(first)
        if not name and not any(not _matches_empty(m) for m in matchers):
            raise self.error("vector selector must contain at least one non-empty matcher", start)
        return VectorSelector(name, tuple(matchers))

    def label_list(self) -> Tuple[str, ...]:
        self.expect("(", "'('")
        labels = []
        while not self.at(")"):
            labels.append(self.label_name("a label name or ')'").text)
            if self.at(","):
                self.next()
            elif not self.at(")"):
                raise self.unexpected("',' or ')'")
        self.next()
        return tuple(labels)

    def aggregate(self) -> Aggregate:
        tok = self.next()
        op = tok.value
        grouping: Tuple[str, ...] = ()
        without, grouped = False, False
        if self.at("by", "without"):
            without, grouped = self.next().value == "without", True
            grouping = self.label_list()
        self.expect("(", "'(' after an aggregation")
        args = self.arguments()
        if self.at("by", "without"):
            if grouped:
                raise self.error("by/without given twice")
            without = self.next().value == "without"
            grouping = self.label_list()
        wanted = 2 if op in ("topk", "bottomk", "quantile", "count_values") else 1
        if len(args) != wanted:
            raise self.error(f"wrong number of arguments for aggregate expression provided, expected {wanted}, "
                             f"got {len(args)}", tok)
        expr, param = args[-1], args[0] if wanted == 2 else None
        if expr.type != VECTOR:
            raise self.error(f"expected type instant vector in aggregation expression, got {_TYPE_NAMES[expr.type]}", tok)
        if param is not None:
            want = STRING if op == "count_values" else SCALAR
            if param.type != want:
                raise self.error(f"expected type {_TYPE_NAMES[want]} in aggregation parameter, got "
                                 f"{_TYPE_NAMES[param.type]}", tok)
        return Aggregate(op, expr, grouping, without, param)

    def arguments(self) -> List[Node]:
        """Comma-separated expressions up to and including ')' (a trailing comma is allowed)."""
        args: List[Node] = []
        while not self.at(")"):
            args.append(self.expression(0))
            if self.at(","):
                self.next()
            elif not self.at(")"):
                raise self.unexpected("',' or ')'")
        self.next()
        return args

    def call(self) -> Call:
        tok = self.next()
        name = tok.value
        if name not in FUNCTIONS:
            raise self.error(f"unknown function with name {name!r}", tok)
        self.next()  # (
        args = self.arguments()
        types, optional, variadic, result = FUNCTIONS[name]
        if len(args) < len(types) - optional or len(args) > len(types) and not variadic:
            want = f"{len(types) - optional}" + (f" or {len(types)}" if optional else "")
            raise self.error(f"expected {want} argument(s) in call to {name!r}, got {len(args)}", tok)
        for i, arg in enumerate(args):
            want = types[min(i, len(types) - 1)]
            if arg.type != want:
                raise self.error(f"expected type {_TYPE_NAMES[want]} in call to function {name!r}, got "
                                 f"{_TYPE_NAMES[arg.type]}", tok)
        return Call(name, args, result)


def _matches_empty(m: Matcher) -> bool:
    if m.op == "=":
        return m.value == ""
    if m.op == "!=":
        return m.value != ""
    hit = regex.fullmatch(m.value, "")
    return hit if m.op == "=~" else not hit


def parse(text: str) -> Node:
    """Parse `text` into a syntax tree, or raise PromQLError naming line:column."""
    if not text.strip():
        raise PromQLError("1:1: parse error: no expression found in input")
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
        quoted = tokenize(value)
        if len(quoted) != 2 or quoted[0].kind != "string":
            raise PromQLError(f"invalid matcher {text!r}: the value is not one quoted string")
        value = quoted[0].value
    if op in ("=~", "!~"):
        try:
            regex.check(value)
        except regex.RegexError as e:
            raise PromQLError(f"in matcher {text!r}: {e}") from None
    return Matcher(label, op, value)


def parse_series(text: str) -> Tuple[str, Tuple[Tuple[str, str], ...]]:
    """A series as promtool's test files write one: `name{a="b"}` or `{__name__="x", a="b"}`
    (equality matchers only): the name and its sorted labels."""
    node = unwrap_selector(parse(text))
    if any(m.op != "=" for m in node.matchers):
        raise PromQLError(f"{text!r}: a series is written with = matchers only")
    labels = {m.label: m.value for m in node.matchers}
    return node.name, tuple(sorted(labels.items()))


def unwrap_selector(node: Node) -> VectorSelector:
    if not isinstance(node, VectorSelector) or node.offset or node.at:
        raise PromQLError("expected a series such as name{label=\"value\"}")
    return node

