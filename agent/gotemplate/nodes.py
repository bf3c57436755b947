"""The parse tree of Go's text/template/parse, with each node's String() as Go writes it (an
execution error names the node it failed at: `at <humanize $value>`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Union

from .strconv import quote


@dataclass
class Node:
    pos: int


@dataclass
class Text(Node):
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Comment(Node):
    text: str

    def __str__(self) -> str:
        return "{{" + self.text + "}}"


@dataclass
class Dot(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class Nil(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass
class Bool(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass
class Number(Node):
    text: str
    is_int: bool = False
    is_uint: bool = False
    is_float: bool = False
    is_complex: bool = False
    int_value: int = 0
    float_value: float = 0.0
    complex_value: complex = 0j

    def __str__(self) -> str:
        return self.text


@dataclass
class String(Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass
class Identifier(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Variable(Node):
    ident: List[str]  # "$x", then fields

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass
class Field(Node):
    ident: List[str]

    def __str__(self) -> str:
        return "".join("." + name for name in self.ident)


@dataclass
class Chain(Node):
    node: Node
    fields: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        inner = str(self.node)
        if isinstance(self.node, Pipe):
            inner = "(" + inner + ")"
        return inner + "".join("." + name for name in self.fields)


@dataclass
class Command(Node):
    args: List[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join("(" + str(a) + ")" if isinstance(a, Pipe) else str(a) for a in self.args)


@dataclass
class Pipe(Node):
    line: int
    is_assign: bool = False
    decl: List[Variable] = field(default_factory=list)
    cmds: List[Command] = field(default_factory=list)

    def __str__(self) -> str:
        out = ""
        if self.decl:
            out = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return out + " | ".join(str(c) for c in self.cmds)


Arg = Union[Dot, Nil, Bool, Number, String, Identifier, Variable, Field, Chain, Pipe]


@dataclass
class ListNode(Node):
    nodes: List[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass
class Action(Node):
    line: int
    pipe: Pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass
class Branch(Node):
    """if, range and with: a pipeline, its list, and the list of its else."""
    line: int
    pipe: Pipe
    list: ListNode
    else_list: Optional[ListNode]
    keyword = ""

    def __str__(self) -> str:
        out = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            out += "{{else}}" + str(self.else_list)
        return out + "{{end}}"


class If(Branch):
    keyword = "if"


class Range(Branch):
    keyword = "range"


class With(Branch):
    keyword = "with"


@dataclass
class Break(Node):
    line: int

    def __str__(self) -> str:
        return "{{break}}"


@dataclass
class Continue(Node):
    line: int

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass
class TemplateCall(Node):
    line: int
    name: str
    pipe: Optional[Pipe]

    def __str__(self) -> str:
        if self.pipe is None:
            return "{{template " + quote(self.name) + "}}"
        return "{{template " + quote(self.name) + " " + str(self.pipe) + "}}"


@dataclass
class End(Node):
    def __str__(self) -> str:
        return "{{end}}"


@dataclass
class Else(Node):
    line: int

    def __str__(self) -> str:
        return "{{else}}"


__all__ = ["Action", "Arg", "Bool", "Branch", "Break", "Chain", "Command", "Comment", "Continue", "Dot", "Else",
           "End", "Field", "Identifier", "If", "ListNode", "Nil", "Node", "Number", "Pipe", "Range", "String",
           "TemplateCall", "Text", "Variable", "With"]
