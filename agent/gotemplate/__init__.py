"""Go's text/template, whole, for the alert templates people already have: the lexer, the
parser and the executor of Go 1.19's text/template with its builtins, and Go's fmt and strconv
for what a template prints. Prometheus' own functions sit on top (agent/templates.py).

There is no well-kept Python implementation of Go templates, so this one is written here, as
the PromQL engine is, and tested against Go's behaviour (tests/unit/test_gotemplate.py) and
against promtool itself (tests/integration/test_template_promtool.py).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .execute import ExecError, Limits, execute
from .funcs import BUILTINS, Func, FuncError
from .parser import ParseError, Tree, parse


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

    def has_function(self, name: str) -> bool:
        return name in self.funcs or name in BUILTINS

    def execute(self, data: Any, funcs: Optional[Dict[str, Func]] = None, name: Optional[str] = None) -> str:
        """Run the template (or the one it defines called `name`); `funcs` replaces functions of
        the same names for this run (a query bound to this alert's evaluation)."""
        table = self.funcs if not funcs else {**self.funcs, **funcs}
        return execute(self.trees, name or self.name, data, table, text=self.text, parse_name=self.name,
                       limits=self.limits, missing_key=self.missing_key)


__all__ = ["BUILTINS", "ExecError", "Func", "FuncError", "Limits", "ParseError", "Template"]
