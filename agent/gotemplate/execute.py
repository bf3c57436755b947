"""The executor of Go's text/template: walks a tree against data, as exec.go does (variables
and their scopes, if/with/range with else, break and continue, template calls with their own
variables, pipelines passing the previous value as the last argument, fields of structs and
keys of maps, functions with Go's argument checks), printing each value as fmt.Fprint would.

Bounded: every node walked and every command run counts against a step budget, template calls
against a depth limit, and the output against a size limit. A template that hits one stops
with an execution error that says which; nothing runs away with a cycle.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .funcs import BUILTINS, Func, FuncError
from .gofmt import sprint
from .gotypes import ANY, VALUE, GoMap, GoStruct, Stringer, Typed, kind, truth, type_name, zero_of
from .nodes import (Action, Bool, Break, Chain, Command, Comment, Continue, Dot, Field, Identifier, If, ListNode,
                    Nil, Node, Number, Pipe, Range, String, TemplateCall, Text, Variable, With)
from .parser import Tree
from .strconv import format_float, quote

MISSING = object()  # no final value from a previous pipeline stage


class ExecError(Exception):
    """A template that failed while running; the message is Go's. `limit` names the bound that
    stopped it (steps, depth, output), if one did."""

    limit: Optional[str] = None


class Limits:
    """What one execution may do."""

    def __init__(self, steps: int = 100_000, depth: int = 100, output: int = 1 << 20):
        self.steps = steps
        self.depth = depth
        self.output = output


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    def __init__(self, trees: Dict[str, Tree], name: str, text: str, parse_name: str,
                 funcs: Dict[str, Func], limits: Limits, missing_key: str):
        self.trees = trees
        self.name = name
        self.text = text
        self.parse_name = parse_name
        self.funcs = funcs
        self.limits = limits
        self.missing_key = missing_key
        self.node: Optional[Node] = None
        self.vars: List[List[Any]] = []
        self.depth = 0
        self.steps = 0
        self.out: List[str] = []
        self.size = 0

    # -- errors -----------------------------------------------------------------------------

    def at(self, node: Node) -> None:
        self.node = node

    def errorf(self, message: str, limit: Optional[str] = None) -> None:
        if self.node is None:
            error = ExecError(f"template: {self.name}: {message}")
            error.limit = limit
            raise error
        before = self.text[:self.node.pos]
        newline = before.rfind("\n")
        col = self.node.pos if newline < 0 else self.node.pos - newline - 1
        line = 1 + before.count("\n")
        error = ExecError(f"template: {self.parse_name}:{line}:{col}: executing {quote(self.name)} "
                          f"at <{self.node}>: {message}")
        error.limit = limit
        raise error

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.steps:
            self.errorf(f"exceeded the step budget ({self.limits.steps} steps)", "steps")

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > self.limits.output:
            self.errorf(f"exceeded the output limit ({self.limits.output} bytes)", "output")
        self.out.append(s)

    # -- variables --------------------------------------------------------------------------

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for var in reversed(self.vars):
            if var[0] == name:
                var[1] = value
                return
        self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        self.vars[len(self.vars) - n][1] = value

    def var_value(self, name: str) -> Any:
        for var in reversed(self.vars):
            if var[0] == name:
                return var[1]
        self.errorf(f"undefined variable: {name}")

    # -- walking ----------------------------------------------------------------------------

    def walk(self, dot: Any, node: Node) -> None:
        self.steps += 1
        if self.steps > self.limits.steps:
            self.at(node)
            self.errorf(f"exceeded the step budget ({self.limits.steps} steps)", "steps")
        self.node = node
        walker: Any = _WALKERS.get(type(node))
        if walker is None:
            self.errorf(f"unknown node: {node}")
            return
        walker(self, dot, node)

    def walk_action(self, dot: Any, node: Action) -> None:
        value = self.eval_pipeline(dot, node.pipe)
        if not node.pipe.decl:
            self.print_value(node, value)

    def walk_text(self, dot: Any, node: Text) -> None:
        self.write(node.text)

    def walk_list(self, dot: Any, node: ListNode) -> None:
        for n in node.nodes:
            self.walk(dot, n)

    def walk_break(self, dot: Any, node: Node) -> None:
        raise _Break() if isinstance(node, Break) else _Continue()

    def walk_comment(self, dot: Any, node: Node) -> None:
        pass

    def walk_if_or_with(self, dot: Any, node: Any) -> None:
        mark = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if isinstance(node, With) else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot: Any, node: Range) -> None:
        self.at(node)
        outer = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            mark = self.mark()
            k = kind(value)
            if k == "slice":
                items: List[Tuple[Any, Any]] = [(i, v) for i, v in enumerate(value)]
            elif k == "map":
                items = sorted(value.items(), key=_map_order)
            elif k == "invalid":
                items = []
            else:
                self.errorf(f"range can't iterate over {sprint([value])}")
                return
            try:
                for index, elem in items:
                    self.one_iteration(node, index, elem, mark)
            except _Break:
                return
            if not items and node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(outer)

    def one_iteration(self, node: Range, index: Any, elem: Any, mark: int) -> None:
        decl = node.pipe.decl
        if decl:
            if node.pipe.is_assign:
                self.set_var(decl[0].ident[0], index if len(decl) > 1 else elem)
            else:
                self.set_top_var(1, elem)
        if len(decl) > 1:
            if node.pipe.is_assign:
                self.set_var(decl[1].ident[0], elem)
            else:
                self.set_top_var(2, index)
        try:
            self.walk(elem, node.list)
        except _Continue:
            pass
        finally:
            self.pop(mark)

    def walk_template(self, dot: Any, node: TemplateCall) -> None:
        self.at(node)
        tree = self.trees.get(node.name)
        if tree is None:
            self.errorf(f"template {quote(node.name)} not defined")
            return
        if self.depth >= self.limits.depth:
            self.errorf(f"exceeded maximum template depth ({self.limits.depth})", "depth")
        dot = self.eval_pipeline(dot, node.pipe)
        saved = (self.name, self.vars, self.depth)
        self.name, self.vars, self.depth = node.name, [["$", dot]], self.depth + 1
        try:
            self.walk(dot, tree.root)
        finally:
            self.name, self.vars, self.depth = saved

    # -- pipelines and commands -------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: Optional[Pipe]) -> Any:
        if pipe is None:
            return None
        self.at(pipe)
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for variable in pipe.decl:
            if pipe.is_assign:
                self.set_var(variable.ident[0], value)
            else:
                self.push(variable.ident[0], value)
        return value

    def eval_command(self, dot: Any, cmd: Command, final: Any) -> Any:
        self.step()
        first = cmd.args[0]
        kind_ = type(first)
        if kind_ is Variable:  # the common cases first, by exact type
            return self.eval_variable_node(dot, first, cmd.args, final)  # type: ignore[arg-type]
        if kind_ is Identifier:
            return self.eval_function(dot, first, cmd, cmd.args, final)  # type: ignore[arg-type]
        if kind_ is Field:
            return self.eval_field_node(dot, first, cmd.args, final)  # type: ignore[arg-type]
        if isinstance(first, Chain):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, Bool):
            return first.value
        if isinstance(first, Dot):
            return dot
        if isinstance(first, Nil):
            self.errorf("nil is not a command")
        if isinstance(first, Number):
            return self.ideal_constant(first)
        if isinstance(first, String):
            return first.text
        self.errorf(f"can't evaluate command {quote(str(first))}")

    def ideal_constant(self, n: Number) -> Any:
        self.at(n)
        text = n.text
        if n.is_complex:
            return n.complex_value
        hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(c in text for c in "pP")
        if n.is_float and not hex_int and not text.startswith("'") and any(c in text for c in ".eEpP"):
            return n.float_value
        if n.is_int:
            return n.int_value
        if n.is_uint:
            self.errorf(f"{text} overflows int")
        return None

    def not_a_function(self, args: List[Node], final: Any) -> None:
        if len(args) > 1 or final is not MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_function(self, dot: Any, node: Identifier, cmd: Node, args: Optional[List[Node]], final: Any) -> Any:
        self.at(node)
        fn = self.funcs.get(node.name) or BUILTINS.get(node.name)
        if fn is None:
            self.errorf(f"{quote(node.name)} is not a defined function")
        return self.eval_call(dot, fn, node.name in BUILTINS and node.name not in self.funcs, cmd, node.name,
                              args, final)

    def eval_call(self, dot: Any, fn: Any, builtin: bool, node: Node, name: str, args: Optional[List[Node]],
                  final: Any) -> Any:
        args = args[1:] if args is not None else []
        num_in = len(args) + (final is not MISSING)
        num_params = len(fn.params) + (1 if fn.variadic is not None else 0)
        if fn.variadic is not None:
            if num_in < len(fn.params):
                self.errorf(f"wrong number of args for {name}: want at least {len(fn.params)} got {len(args)}")
        elif num_in != len(fn.params):
            self.errorf(f"wrong number of args for {name}: want {len(fn.params)} got {num_in}")
        if builtin and name in ("and", "or"):
            return self.and_or(dot, name, args, final)
        argv = [self.eval_arg(dot, fn.param_type(i), arg) for i, arg in enumerate(args)]
        if final is not MISSING:
            argv.append(self.validate_type(final, fn.param_type(num_in - 1)))
        del num_params
        try:
            return fn.call(*argv)
        except FuncError as e:
            self.at(node)
            self.errorf(f"error calling {name}: {e}")
        except RecursionError:
            self.at(node)
            self.errorf(f"error calling {name}: too deep")

    def and_or(self, dot: Any, name: str, args: List[Node], final: Any) -> Any:
        value = None
        for arg in args:
            value = self.eval_arg(dot, VALUE, arg)
            if truth(value) == (name == "or"):
                return value
        if final is not MISSING:
            value = final
        return value

    def eval_arg(self, dot: Any, want: str, n: Node) -> Any:  # noqa: C901 - one branch per node type, as Go's
        self.at(n)
        if isinstance(n, Dot):
            return self.validate_type(dot, want)
        if isinstance(n, Nil):
            if want in (ANY,) or want.startswith(("*", "map[", "[]")) or want == "template.queryResult":
                return None
            self.errorf(f"cannot assign nil to {want}")
        if isinstance(n, Field):
            return self.validate_type(self.eval_field_node(dot, n, [n], MISSING), want)
        if isinstance(n, Variable):
            return self.validate_type(self.eval_variable_node(dot, n, None, MISSING), want)
        if isinstance(n, Pipe):
            return self.validate_type(self.eval_pipeline(dot, n), want)
        if isinstance(n, Identifier):
            return self.validate_type(self.eval_function(dot, n, n, None, MISSING), want)
        if isinstance(n, Chain):
            return self.validate_type(self.eval_chain_node(dot, n, None, MISSING), want)
        if want in (ANY, VALUE):
            return self.eval_empty_interface(dot, n)
        literal = _LITERALS.get(want)
        if literal is None:
            self.errorf(f"can't handle {n} for arg of type {want}")
            return None
        fits, word = literal
        value = fits(n)
        if value is None:
            self.errorf(f"expected {word}; found {n}")
        return value

    def eval_empty_interface(self, dot: Any, n: Node) -> Any:
        self.at(n)
        if isinstance(n, Bool):
            return n.value
        if isinstance(n, Number):
            return self.ideal_constant(n)
        if isinstance(n, String):
            return n.text
        self.errorf(f"can't handle assignment of {n} to empty interface argument")

    def validate_type(self, value: Any, want: str) -> Any:
        if value is None or value is MISSING:
            if want in (ANY, VALUE) or want.startswith(("*", "map[", "[]")) or want == "template.queryResult":
                return None
            self.errorf(f"invalid value; expected {want}")
        if want in (ANY, VALUE) or type_name(value) == want:
            return value
        if isinstance(value, GoStruct) and value.pointer and value.go_type.lstrip("*") == want:
            return GoStruct(want, list(value.fields.items()))
        self.errorf(f"wrong type for value; expected {want}; got {type_name(value)}")

    # -- fields and variables ---------------------------------------------------------------

    def eval_field_node(self, dot: Any, field: Field, args: List[Node], final: Any) -> Any:
        self.at(field)
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(self, dot: Any, chain: Chain, args: Optional[List[Node]], final: Any) -> Any:
        self.at(chain)
        if isinstance(chain.node, Nil):
            self.errorf(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, ANY, chain.node) if not isinstance(chain.node, (Bool, Number, String)) \
            else self.eval_empty_interface(dot, chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args, final)

    def eval_variable_node(self, dot: Any, variable: Variable, args: Optional[List[Node]], final: Any) -> Any:
        self.at(variable)
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args or [], final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, node: Node, ident: List[str], args: Optional[List[Node]],
                         final: Any) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: Node, args: Optional[List[Node]], final: Any,
                   receiver: Any) -> Any:
        if receiver is None:
            if self.missing_key == "error":
                self.errorf(f"nil data; no entry for key {quote(name)}")
            return None
        methods = getattr(receiver, "methods", None)
        if methods and name in methods:
            return self.eval_call(dot, methods[name], False, node, name, args, final)
        has_args = (args is not None and len(args) > 1) or final is not MISSING
        if isinstance(receiver, GoStruct):
            if name in receiver.fields:
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return receiver.fields[name]
        elif isinstance(receiver, dict):
            key_type = getattr(receiver, "key", "string")
            if key_type in ("string", ANY):
                if has_args:
                    self.errorf(f"{name} is not a method but has arguments")
                if name in receiver:
                    return receiver[name]
                if self.missing_key == "zero":
                    return receiver.zero() if isinstance(receiver, GoMap) else zero_of(ANY)
                if self.missing_key == "error":
                    self.errorf(f"map has no entry for key {quote(name)}")
                return None
        self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    # -- printing ---------------------------------------------------------------------------

    def print_value(self, node: Node, value: Any) -> None:
        self.at(node)
        if value is None or value is MISSING:
            self.write("<no value>")
            return
        kind_ = type(value)
        if kind_ is str:  # the common cases, as fmt prints them, without fmt's machinery
            self.write(value)
        elif kind_ is float:
            self.write(format_float(value, "g", -1))
        elif kind_ is int:
            self.write(str(value))
        elif isinstance(value, Func) or (callable(value) and not isinstance(value, (Stringer, GoStruct))):
            self.errorf(f"can't print {node} of type {type_name(value)}")
        else:
            self.write(sprint([value]))


# what walks each node type (Go's walk switch, as a table)
_WALKERS = {Action: _State.walk_action, Text: _State.walk_text, ListNode: _State.walk_list,
            If: _State.walk_if_or_with, With: _State.walk_if_or_with, Range: _State.walk_range,
            TemplateCall: _State.walk_template, Break: _State.walk_break, Continue: _State.walk_break,
            Comment: _State.walk_comment}


def _number(n: Node, which: str) -> Any:
    if isinstance(n, Number) and getattr(n, "is_" + which):
        return n.float_value if which == "float" else n.int_value
    return None


# a parameter's Go type -> (the literal's value when the literal fits it, else None; Go's word for it)
_LITERALS: Dict[str, Tuple[Any, str]] = {
    "bool": (lambda n: n.value if isinstance(n, Bool) else None, "bool"),
    "string": (lambda n: n.text if isinstance(n, String) else None, "string"),
    **dict.fromkeys(("float64", "float32"), (lambda n: _number(n, "float"), "float")),
    **dict.fromkeys(("int", "int64", "int32"), (lambda n: _number(n, "int"), "integer")),
    **dict.fromkeys(("uint", "uint64"), (lambda n: _number(n, "uint"), "unsigned integer")),
}


def _map_order(item: Tuple[Any, Any]) -> Any:
    key = item[0]
    if isinstance(key, str):
        return (1, key.encode("utf-8", "surrogatepass"))
    return (0, key)



def execute(trees: Dict[str, Tree], name: str, data: Any, funcs: Dict[str, Func], *, text: str,
            parse_name: Optional[str] = None, limits: Optional[Limits] = None, missing_key: str = "invalid",
            variables: Sequence[Tuple[str, Any]] = ()) -> str:
    """Run the template `name` of `trees` with `data` as dot (and `variables` declared, as if by
    actions before its text); ExecError on failure."""
    tree = trees.get(name)
    state = _State(trees, name, text, parse_name or name, funcs, limits or Limits(), missing_key)
    if tree is None:
        raise ExecError(f"template: {name}: {quote(name)} is an incomplete or empty template")
    state.push("$", data)
    for variable, value in variables:
        state.push(variable, value)
    try:
        state.walk(data, tree.root)
    except (_Break, _Continue):
        pass
    except RecursionError:
        state.errorf("exceeded the nesting limit", "depth")
    return "".join(state.out)


__all__ = ["ExecError", "Limits", "MISSING", "execute", "Typed"]
