"""The parser of Go's text/template/parse: items to trees, one per template (the main one and
each {{define}} or {{block}}), refusing what Go refuses at parse time with Go's words
(`template: NAME:LINE: function "x" not defined`, `undefined variable "$x"`, `unexpected EOF`,
`{{break}} outside {{range}}`, `non executable command in pipeline stage 2`, ...)."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

from . import lexer as lx
from .lexer import Item, Lexer
from .nodes import (Action, Bool, Break, Chain, Command, Comment, Continue, Dot, Else, End, Field, Identifier, If,
                    ListNode, Nil, Node, Number, Pipe, Range, String, TemplateCall, Text, Variable, With)
from .strconv import SyntaxErr, parse_float, parse_int, quote, unquote, unquote_char

_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)


class ParseError(ValueError):
    """A template Go's parser refuses; the message is Go's."""


class Tree:
    """One parsed template."""

    def __init__(self, name: str, root: Optional[ListNode] = None):
        self.name = name
        self.root = root if root is not None else ListNode(0)


def is_empty(n: Node) -> bool:
    if isinstance(n, ListNode):
        return all(is_empty(x) for x in n.nodes)
    if isinstance(n, Text):
        return n.text.strip(" \t\r\n") == ""
    return isinstance(n, Comment)


class _Parser:
    def __init__(self, parse_name: str, items: List[Item], text: str, has_function: Callable[[str], bool],
                 trees: Dict[str, Tree]):
        self.parse_name = parse_name
        self.items = items
        self.i = 0
        self.text = text
        self.has_function = has_function
        self.trees = trees
        self.vars: List[str] = ["$"]
        self.range_depth = 0
        self.action_line = 0
        self.last: Item = items[0] if items else Item(lx.EOF, 0, "", 1)

    # -- tokens -----------------------------------------------------------------------------

    def next(self) -> Item:
        item = self.items[self.i] if self.i < len(self.items) else self.items[-1]
        self.i = min(self.i + 1, len(self.items))
        self.last = item
        return item

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> Item:
        return self.items[self.i] if self.i < len(self.items) else self.items[-1]

    def next_non_space(self) -> Item:
        item = self.next()
        while item.kind == lx.SPACE:
            item = self.next()
        return item

    def peek_non_space(self) -> Item:
        item = self.next_non_space()
        self.backup()
        return item

    def errorf(self, message: str) -> None:
        raise ParseError(f"template: {self.parse_name}:{self.last.line}: {message}")

    def expect(self, kind: str, context: str) -> Item:
        token = self.next_non_space()
        if token.kind != kind:
            self.unexpected(token, context)
        return token

    def unexpected(self, token: Item, context: str) -> None:
        if token.kind == lx.ERROR:
            extra = ""
            if self.action_line and self.action_line != token.line:
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            self.errorf(f"{token}{extra}")
        self.errorf(f"unexpected {token} in {context}")

    # -- templates --------------------------------------------------------------------------

    def parse(self, name: str) -> None:
        root = ListNode(self.peek().pos)
        while self.peek().kind != lx.EOF:
            if self.peek().kind == lx.LEFT_DELIM:
                at_delim = self.i
                self.next()
                if self.next_non_space().kind == "define":
                    self.parse_definition()
                    continue
                self.i = at_delim
            n = self.text_or_action()
            if isinstance(n, (End, Else)):
                self.errorf(f"unexpected {n}")
            root.nodes.append(n)
        self.add(Tree(name, root))

    def add(self, tree: Tree) -> None:
        existing = self.trees.get(tree.name)
        if existing is None or is_empty(existing.root):
            self.trees[tree.name] = tree
            return
        if not is_empty(tree.root):
            self.errorf(f"template: multiple definition of template {quote(tree.name)}")

    def sub_parser(self) -> "_Parser":
        sub = _Parser(self.parse_name, self.items, self.text, self.has_function, self.trees)
        sub.i = self.i
        sub.last = self.last
        return sub

    def parse_definition(self) -> None:
        context = "define clause"
        sub = self.sub_parser()
        token = sub.next_non_space()
        if token.kind not in (lx.STRING, lx.RAW_STRING):
            sub.unexpected(token, context)
        name = sub.unquote(token)
        sub.expect(lx.RIGHT_DELIM, context)
        root, end = sub.item_list()
        if not isinstance(end, End):
            sub.errorf(f"unexpected {end} in {context}")
        sub.add(Tree(name, root))
        self.i = sub.i
        self.last = sub.last

    def item_list(self) -> Tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().kind != lx.EOF:
            n = self.text_or_action()
            if isinstance(n, (End, Else)):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")
        raise AssertionError("unreachable")

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.kind == lx.TEXT:
            return Text(token.pos, token.val)
        if token.kind == lx.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if token.kind == lx.COMMENT:
            return Comment(token.pos, token.val)
        self.unexpected(token, "input")
        raise AssertionError("unreachable")

    def action(self) -> Node:
        token = self.next_non_space()
        control = {"block": self.block_control, "else": self.else_control, "end": self.end_control,
                   "if": self.if_control, "range": self.range_control, "template": self.template_control,
                   "with": self.with_control}
        if token.kind == "break":
            return self.break_control(token, "break", Break)
        if token.kind == "continue":
            return self.break_control(token, "continue", Continue)
        if token.kind in control:
            return control[token.kind]()
        self.backup()
        token = self.peek()
        return Action(token.pos, token.line, self.pipeline("command", lx.RIGHT_DELIM))

    def break_control(self, token: Item, word: str, node: type) -> Node:
        after = self.next_non_space()
        if after.kind != lx.RIGHT_DELIM:
            self.unexpected(after, "{{" + word + "}}")
        if self.range_depth == 0:
            self.errorf("{{" + word + "}} outside {{range}}")
        return node(token.pos, token.line)

    # -- pipelines --------------------------------------------------------------------------

    def pipeline(self, context: str, end: str) -> Pipe:
        token = self.peek_non_space()
        pipe = Pipe(token.pos, token.line)
        self.declarations(pipe, context)
        while True:
            token = self.next_non_space()
            if token.kind == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.kind in (lx.BOOL, lx.CHAR_CONSTANT, lx.COMPLEX, "dot", lx.FIELD, lx.IDENTIFIER, lx.NUMBER, "nil",
                              lx.RAW_STRING, lx.STRING, lx.VARIABLE, lx.LEFT_PAREN):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def declarations(self, pipe: Pipe, context: str) -> None:
        while True:
            v = self.peek_non_space()
            if v.kind != lx.VARIABLE:
                return
            start = self.i
            self.next_non_space()
            after_variable = self.peek()
            nxt = self.peek_non_space()
            if nxt.kind in (lx.ASSIGN, lx.DECLARE):
                pipe.is_assign = nxt.kind == lx.ASSIGN
                self.next_non_space()
                pipe.decl.append(Variable(v.pos, [v.val]))
                self.vars.append(v.val)
                return
            if nxt.kind == lx.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(Variable(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in (lx.VARIABLE, lx.RIGHT_DELIM, lx.RIGHT_PAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            del after_variable
            self.i = start
            return

    def check_pipeline(self, pipe: Pipe, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(c.args[0], (Bool, Dot, Nil, Number, String)):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> Command:
        cmd = Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.kind == lx.SPACE:
                continue
            if token.kind in (lx.RIGHT_DELIM, lx.RIGHT_PAREN):
                self.backup()
            elif token.kind != lx.PIPE:
                self.unexpected(token, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> Optional[Node]:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == lx.FIELD:
            chain = Chain(self.peek().pos, node)
            while self.peek().kind == lx.FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, Field):
                return Field(chain.pos, node.ident + chain.fields)
            if isinstance(node, Variable):
                return Variable(chain.pos, node.ident + chain.fields)
            if isinstance(node, (Bool, String, Number, Nil, Dot)):
                self.errorf(f"unexpected . after term {quote(str(node))}")
            return chain
        return node

    def term(self) -> Optional[Node]:
        token = self.next_non_space()
        kind = token.kind
        if kind == lx.IDENTIFIER:
            if not self.has_function(token.val):
                self.errorf(f"function {quote(token.val)} not defined")
            return Identifier(token.pos, token.val)
        if kind == "dot":
            return Dot(token.pos)
        if kind == "nil":
            return Nil(token.pos)
        if kind == lx.VARIABLE:
            return self.use_var(token)
        if kind == lx.FIELD:
            return Field(token.pos, [token.val[1:]])
        if kind == lx.BOOL:
            return Bool(token.pos, token.val == "true")
        if kind in (lx.CHAR_CONSTANT, lx.COMPLEX, lx.NUMBER):
            return self.number(token)
        if kind == lx.LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", lx.RIGHT_PAREN)
        if kind in (lx.STRING, lx.RAW_STRING):
            return String(token.pos, token.val, self.unquote(token))
        self.backup()
        return None

    def unquote(self, token: Item) -> str:
        try:
            return unquote(token.val)
        except SyntaxErr as e:
            self.errorf(str(e))
            raise AssertionError("unreachable") from None

    def use_var(self, token: Item) -> Variable:
        parts = token.val.split(".")
        if parts[0] not in self.vars:
            self.errorf(f"undefined variable {quote(parts[0])}")
        return Variable(token.pos, parts)

    def number(self, token: Item) -> Number:
        try:
            return new_number(token.pos, token.val, token.kind)
        except ValueError as e:
            self.errorf(str(e))
            raise AssertionError("unreachable") from None

    # -- control structures -----------------------------------------------------------------

    def parse_control(self, allow_else_if: bool, context: str) -> Tuple[Pipe, ListNode, Optional[ListNode]]:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, lx.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list = None
            if isinstance(nxt, Else):
                if allow_else_if and self.peek().kind == "if":
                    self.next()
                    else_list = ListNode(nxt.pos, [self.if_control()])
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, End):
                        self.errorf(f"expected end; found {nxt}")
            return pipe, lst, else_list
        finally:
            del self.vars[mark:]

    def if_control(self) -> Node:
        pipe, lst, else_list = self.parse_control(True, "if")
        return If(pipe.pos, pipe.line, pipe, lst, else_list)

    def range_control(self) -> Node:
        pipe, lst, else_list = self.parse_control(False, "range")
        return Range(pipe.pos, pipe.line, pipe, lst, else_list)

    def with_control(self) -> Node:
        pipe, lst, else_list = self.parse_control(False, "with")
        return With(pipe.pos, pipe.line, pipe, lst, else_list)

    def end_control(self) -> Node:
        return End(self.expect(lx.RIGHT_DELIM, "end").pos)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.kind == "if":
            return Else(peek.pos, peek.line)
        token = self.expect(lx.RIGHT_DELIM, "else")
        return Else(token.pos, token.line)

    def template_name(self, token: Item, context: str) -> str:
        if token.kind in (lx.STRING, lx.RAW_STRING):
            return self.unquote(token)
        self.unexpected(token, context)
        raise AssertionError("unreachable")

    def template_control(self) -> Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = None
        if self.next_non_space().kind != lx.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, lx.RIGHT_DELIM)
        return TemplateCall(token.pos, token.line, name, pipe)

    def block_control(self) -> Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = self.pipeline(context, lx.RIGHT_DELIM)
        sub = self.sub_parser()
        root, end = sub.item_list()
        if not isinstance(end, End):
            sub.errorf(f"unexpected {end} in {context}")
        sub.add(Tree(name, root))
        self.i, self.last = sub.i, sub.last
        return TemplateCall(token.pos, token.line, name, pipe)



def new_number(pos: int, text: str, kind: str) -> Number:
    """A number literal as Go's parser reads it: which of int, uint, float and complex it can be."""
    n = Number(pos, text)
    if kind == lx.CHAR_CONSTANT:
        return _char_number(n, text)
    if kind == lx.COMPLEX:
        value = _parse_complex(text)
        if value is None:
            raise ValueError("expected integer")  # fmt.Sscan's complaint
        n.is_complex, n.complex_value = True, value
        _simplify_complex(n)
        return n
    if text.endswith("i"):
        f = parse_float(text[:-1])
        if f is not None:
            n.is_complex, n.complex_value = True, complex(0, f)
            _simplify_complex(n)
            return n
    i = parse_int(text)
    if i is not None and _UINT64[0] <= i <= _UINT64[1]:
        n.is_uint, n.int_value = True, i
    if i is not None and _INT64[0] <= i <= _INT64[1]:
        n.is_int, n.int_value = True, i
    if n.is_int or n.is_uint:
        n.is_float, n.float_value = True, float(n.int_value)
    else:
        _float_number(n, text)
    if not (n.is_int or n.is_uint or n.is_float):
        raise ValueError(f"illegal number syntax: {quote(text)}")
    return n


def _char_number(n: Number, text: str) -> Number:
    try:
        ch, tail = unquote_char(text[1:], text[0])
    except SyntaxErr:
        raise ValueError("invalid syntax") from None
    if tail != "'":
        raise ValueError(f"malformed character constant: {text}")
    n.is_int = n.is_uint = n.is_float = True
    n.int_value, n.float_value = ord(ch), float(ord(ch))
    return n


def _float_number(n: Number, text: str) -> None:
    f = parse_float(text)
    if f is None:
        return
    if not any(c in text for c in ".eEpP"):
        raise ValueError(f"integer overflow: {quote(text)}")
    n.is_float, n.float_value = True, f
    if math.isfinite(f) and f == int(f):
        whole = int(f)
        n.is_uint = _UINT64[0] <= whole <= _UINT64[1]
        n.is_int = _INT64[0] <= whole <= _INT64[1]
        if n.is_int or n.is_uint:
            n.int_value = whole


def _parse_complex(text: str) -> Optional[complex]:
    body = text[:-1]
    for k in range(len(body) - 1, 0, -1):
        if body[k] in "+-" and body[k - 1] not in "eEpP":
            real, imag = parse_float(body[:k]), parse_float(body[k:])
            if real is not None and imag is not None:
                return complex(real, imag)
    return None


def _simplify_complex(n: Number) -> None:
    v = n.complex_value
    if v.imag == 0:
        n.is_float, n.float_value = True, v.real
        if n.float_value == int(n.float_value) and _INT64[0] <= int(v.real) <= _INT64[1]:
            n.is_int, n.int_value = True, int(v.real)
        if n.float_value == int(n.float_value) and int(v.real) >= 0:
            n.is_uint = True


def parse(name: str, text: str, has_function: Callable[[str], bool],
          trees: Optional[Dict[str, Tree]] = None) -> Dict[str, Tree]:
    """Parse `text` as the template `name`; returns every template it defines, by name."""
    trees = {} if trees is None else trees
    items = Lexer(text, break_ok=not has_function("break"), continue_ok=not has_function("continue")).items
    _Parser(name, items, text, has_function, trees).parse(name)
    return trees


__all__ = ["ParseError", "Tree", "is_empty", "new_number", "parse"]
