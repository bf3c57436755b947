"""Go's text/template, whole, for the alert templates people already have: the lexer, the
parser and the executor of Go 1.19's text/template with its builtins, and Go's fmt and strconv
for what a template prints. Prometheus' own functions sit on top (agent/templates.py).

There is no well-kept Python implementation of Go templates, so this one is written here, as
the PromQL engine is, and tested against Go's behaviour (tests/unit/test_gotemplate.py) and
against promtool itself (tests/integration/test_template_promtool.py).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .execute import ExecError, Limits, execute
from .funcs import BUILTINS, Func, FuncError
from .nodes import Branch, Chain, Command, Identifier, ListNode, Node, Pipe, String, TemplateCall
from .nodes import Action as ActionNode
from .parser import ParseError, Tree, parse


def _walk(node: Optional[Node], function: str, found: List[str]) -> None:
    if isinstance(node, ListNode):
        for n in node.nodes:
            _walk(n, function, found)
    elif isinstance(node, ActionNode):
        _walk(node.pipe, function, found)
    elif isinstance(node, Branch):
        _walk(node.pipe, function, found)
        _walk(node.list, function, found)
        _walk(node.else_list, function, found)
    elif isinstance(node, TemplateCall):
        _walk(node.pipe, function, found)
    elif isinstance(node, Pipe):
        for i, cmd in enumerate(node.cmds):
            _walk(cmd, function, found)
            head = cmd.args[0]
            if isinstance(head, Identifier) and head.name == function and len(cmd.args) == 1 and i > 0:
                previous = node.cmds[i - 1].args
                if len(previous) == 1 and isinstance(previous[0], String):
                    found.append(previous[0].text)  # "up" | query
    elif isinstance(node, Command):
        head = node.args[0]
        if isinstance(head, Identifier) and head.name == function and len(node.args) == 2 \
                and isinstance(node.args[1], String):
            found.append(node.args[1].text)
        for arg in node.args:
            _walk(arg, function, found)
    elif isinstance(node, Chain):
        _walk(node.node, function, found)


class Template:
    """A parsed template and the templates it defines, ready to execute many times."""

    def __init__(self, name: str, text: str, funcs: Optional[Dict[str, Func]] = None,
                 missing_key: str = "invalid", limits: Optional[Limits] = None):
        self.name = name
        self.text = text
        self.funcs: Dict[str, Func] = dict(funcs or {})
        self.missing_key = missing_key
        self.limits = limits or Limits()
        try:
            self.trees: Dict[str, Tree] = parse(name, text, self.has_function)
        except RecursionError:
            raise ParseError(f"template: {name}: nested too deeply") from None

    def literal_arguments(self, function: str) -> List[str]:
        """The string literals passed to `function` anywhere in the templates (`query "up"` and
        `"up" | query`): what a caller can know before running, such as the series a query reads."""
        found: List[str] = []
        for tree in self.trees.values():
            _walk(tree.root, function, found)
        return found

    def has_function(self, name: str) -> bool:
        return name in self.funcs or name in BUILTINS

    def execute(self, data: Any, funcs: Optional[Dict[str, Func]] = None, name: Optional[str] = None,
                variables: Sequence[Tuple[str, Any]] = ()) -> str:
        """Run the template (or the one it defines called `name`); `funcs` replaces functions of
        the same names for this run (a query bound to this alert's evaluation); `variables` are
        declared before it runs."""
        table = self.funcs if not funcs else {**self.funcs, **funcs}
        return execute(self.trees, name or self.name, data, table, text=self.text, parse_name=self.name,
                       limits=self.limits, missing_key=self.missing_key, variables=variables)

    def take_declarations(self, count: int) -> List[str]:
        """Remove the first `count` actions of the main template, each of which must only declare
        a variable, and return their names: the caller declares them on each run instead (the
        same variables, without running the actions)."""
        root = self.trees[self.name].root
        names = []
        for node in root.nodes[:count]:
            if not (isinstance(node, ActionNode) and len(node.pipe.decl) == 1 and not node.pipe.is_assign):
                raise ValueError(f"not a declaration: {node}")
            names.append(node.pipe.decl[0].ident[0])
        del root.nodes[:count]
        return names


__all__ = ["BUILTINS", "ExecError", "Func", "FuncError", "Limits", "ParseError", "Template"]
