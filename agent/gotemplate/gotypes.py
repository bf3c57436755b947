"""The Go values a template sees, as Python values that remember their Go type.

Go's template engine and its fmt package decide by type: `%d` of a float64 prints
`%!d(float64=42)`, `eq 1 1.0` is "incompatible types", a function that takes a string refuses
a float64. Python's own types stand for the common Go types (bool, int, float64, complex128,
string, nil); the wrappers here carry the rest (a map's, a slice's, a struct's or a named
type's Go name), so an error names the type as Go would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

ANY = "interface {}"
VALUE = "reflect.Value"  # a builtin's parameter that takes anything as it is


class Typed(int):
    """An integer of a named Go type other than int: uint8 (a byte of a string), int32 (a rune),
    int64, uint64."""

    go_type: str

    def __new__(cls, value: int, go_type: str) -> "Typed":
        self = super().__new__(cls, value)
        self.go_type = go_type
        return self


class TypedStr(str):
    """A string of a named Go type, such as html/template.HTML (`safeHtml`'s result)."""

    go_type: str

    def __new__(cls, value: str, go_type: str) -> "TypedStr":
        self = super().__new__(cls, value)
        self.go_type = go_type
        return self


class GoMap(dict):
    """A Go map: its type's name and its element type (the zero value of a missing key)."""

    def __init__(self, items: Any = (), key: str = "string", elem: str = "string"):
        super().__init__(items)
        self.key = key
        self.elem = elem
        self.go_type = f"map[{key}]{elem}"

    def zero(self) -> Any:
        return zero_of(self.elem)


class GoSlice(list):
    """A Go slice with its type's name (`template.queryResult`, `[]interface {}`)."""

    def __init__(self, items: Iterable[Any] = (), go_type: str = "[]interface {}", elem: str = ANY):
        super().__init__(items)
        self.go_type = go_type
        self.elem = elem


class GoStruct:
    """A struct value, or a pointer to one (`pointer`): exported fields in declaration order."""

    def __init__(self, go_type: str, fields: Sequence[Tuple[str, Any]], pointer: bool = False,
                 field_types: Optional[Dict[str, str]] = None):
        self.go_type = go_type
        self.fields = dict(fields)
        self.order = [name for name, _ in fields]
        self.pointer = pointer
        self.field_types = field_types or {}


class Stringer(ABC):
    """A value with a String() method (time.Time, *time.Time): fmt prints what it returns.
    Each kind of value says how (templates.GoTime)."""

    go_type = "time.Time"

    @abstractmethod
    def string(self) -> str:
        """Go's String() of the value."""


def type_name(v: Any) -> Optional[str]:
    """The Go type's name as reflect's Type.String() says it; None for nil."""
    if v is None:
        return None
    name = getattr(v, "go_type", None)
    if name is not None:
        return name
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, complex):
        return "complex128"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if callable(v):
        return "func"
    return type(v).__name__


_UNSIGNED = ("uint", "uint8", "uint16", "uint32", "uint64", "uintptr")


def kind(v: Any) -> str:
    """reflect's Kind, in the words this package uses: bool, int, uint, float, complex, string,
    map, slice, struct, ptr, func, invalid."""
    if v is None:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Typed):
        return "uint" if v.go_type in _UNSIGNED else "int"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, complex):
        return "complex"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, (list, tuple)):
        return "slice"
    if isinstance(v, GoStruct):
        return "ptr" if v.pointer else "struct"
    if isinstance(v, Stringer):
        return "ptr" if v.go_type.startswith("*") else "struct"
    if callable(v):
        return "func"
    return "struct"


def zero_of(go_type: str) -> Any:
    """The zero value of a type by name (a missing map key under missingkey=zero)."""
    if go_type == "string":
        return ""
    if go_type in ("int",):
        return 0
    if go_type in ("float64", "float32"):
        return 0.0
    if go_type == "bool":
        return False
    return None


def assignable(v: Any, want: str) -> bool:
    """Whether a value of v's type can be passed where `want` is declared."""
    if want in (ANY, VALUE):
        return True
    return type_name(v) == want


def truth(v: Any) -> bool:
    """Go template's truth: false, 0, nil, an empty string, map or slice are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float, complex)):
        return v != 0  # NaN != 0 too, as in Go
    if isinstance(v, (str, dict, list, tuple)):
        return len(v) > 0
    return True


__all__ = ["ANY", "VALUE", "GoMap", "GoSlice", "GoStruct", "Stringer", "Typed", "TypedStr", "assignable",
           "kind", "truth", "type_name", "zero_of"]
