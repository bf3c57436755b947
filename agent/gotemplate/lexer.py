"""The lexer of Go's text/template/parse: text and actions between {{ and }}, with trim
markers (`{{- ` and ` -}}`), comments (`{{/* */}}`), and inside an action the same items
Go's lexer makes (spaces, `:=`, `=`, `|`, parentheses, strings, raw strings, characters,
numbers, complex numbers, identifiers, keywords, .fields, $variables, single characters).
Errors read as Go's ("unclosed action", "bad number syntax: ...").
"""

from __future__ import annotations

from typing import List, NamedTuple

from .strconv import quote

LEFT, RIGHT = "{{", "}}"
TRIM = 2  # a trim marker and its space: "- " or " -"

# item kinds
ERROR, BOOL, CHAR, CHAR_CONSTANT, COMMENT, COMPLEX, ASSIGN, DECLARE, EOF, FIELD, IDENTIFIER = (
    "error", "bool", "char", "charconst", "comment", "complex", "assign", "declare", "EOF", "field", "identifier")
LEFT_DELIM, LEFT_PAREN, NUMBER, PIPE, RAW_STRING, RIGHT_DELIM, RIGHT_PAREN, SPACE, STRING, TEXT, VARIABLE = (
    "leftdelim", "leftparen", "number", "pipe", "rawstring", "rightdelim", "rightparen", "space", "string", "text",
    "variable")
KEYWORDS = {".": "dot", "block": "block", "break": "break", "continue": "continue", "define": "define", "else": "else",
            "end": "end", "if": "if", "range": "range", "nil": "nil", "template": "template", "with": "with"}
KEYWORD_KINDS = frozenset(KEYWORDS.values())


class Item(NamedTuple):
    kind: str
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.kind == EOF:
            return "EOF"
        if self.kind == ERROR:
            return self.val
        if self.kind in KEYWORD_KINDS:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return quote(self.val[:10]) + "..."
        return quote(self.val)


def _is_space(c: str) -> bool:
    return c != "" and c in " \t\r\n"  # "" is the end of the input


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()  # isdecimal: exactly category Nd, Go's unicode.IsDigit


def _unicode_name(c: str) -> str:
    """Go's %#U: U+0021 '!'."""
    text = "U+%04X" % ord(c)
    return f"{text} '{c}'" if c.isprintable() else text


class Lexer:
    """Scans the whole text into items up front (templates are short)."""

    def __init__(self, text: str, break_ok: bool = True, continue_ok: bool = True):
        self.input = text
        self.items: List[Item] = []
        self.start = self.pos = 0
        self.line = self.start_line = 1
        self.paren_depth = 0
        self.break_ok, self.continue_ok = break_ok, continue_ok
        state = self.lex_text
        while state is not None:
            state = state()

    # -- primitives -------------------------------------------------------------------------

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.pos = len(self.input) + 1  # past the end, so backup returns to it
            return ""
        c = self.input[self.pos]
        self.pos += 1
        if c == "\n":
            self.line += 1
        return c

    def peek(self) -> str:
        return self.input[self.pos] if self.pos < len(self.input) else ""

    def backup(self) -> None:
        if self.pos > len(self.input):
            self.pos = len(self.input)
            return
        self.pos -= 1
        if self.input[self.pos] == "\n":
            self.line -= 1

    def emit(self, kind: str) -> None:
        self.items.append(Item(kind, self.start, self.input[self.start:self.pos], self.start_line))
        self.start = self.pos
        self.start_line = self.line

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def error(self, message: str) -> None:
        self.items.append(Item(ERROR, self.start, message, self.start_line))

    def accept(self, valid: str) -> bool:
        if self.peek() != "" and self.peek() in valid:
            self.next()
            return True
        return False

    def accept_run(self, valid: str) -> None:
        while self.peek() != "" and self.peek() in valid:
            self.next()

    def at_right_delim(self) -> "tuple[bool, bool]":
        rest = self.input[self.pos:]
        if len(rest) >= 2 and _is_space(rest[0]) and rest[1] == "-" and rest[TRIM:].startswith(RIGHT):
            return True, True
        return rest.startswith(RIGHT), False

    def at_terminator(self) -> bool:
        c = self.peek()
        return c == "" or _is_space(c) or c in ".,|:)(" or c == RIGHT[0]

    # -- states -----------------------------------------------------------------------------

    def lex_text(self):  # noqa: ANN201 - a state function returns the next state
        x = self.input.find(LEFT, self.pos)
        if x < 0:
            self.pos = len(self.input)
            if self.pos > self.start:
                self.line += self.input.count("\n", self.start, self.pos)
                self.emit(TEXT)
            self.emit(EOF)
            return None
        self.pos = x
        trim = 0
        after = self.input[x + len(LEFT):]
        if len(after) >= 2 and after[0] == "-" and _is_space(after[1]):
            trim = len(self.input[self.start:x]) - len(self.input[self.start:x].rstrip(" \t\r\n"))
        self.pos -= trim
        self.line += self.input.count("\n", self.start, self.pos)
        if self.pos > self.start:
            self.emit(TEXT)
        self.pos += trim
        self.ignore()
        return self.lex_left_delim

    def lex_left_delim(self):  # noqa: ANN201
        self.pos += len(LEFT)
        rest = self.input[self.pos:]
        trim = len(rest) >= 2 and rest[0] == "-" and _is_space(rest[1])
        after = TRIM if trim else 0
        if rest[after:].startswith("/*"):
            self.pos += after
            self.ignore()
            return self.lex_comment
        self.emit(LEFT_DELIM)
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self):  # noqa: ANN201
        self.pos += 2
        x = self.input.find("*/", self.pos)
        if x < 0:
            self.error("unclosed comment")
            return None
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            self.error("comment ends before closing delimiter")
            return None
        self.line += self.input.count("\n", self.start, self.pos)
        self.emit(COMMENT)
        if trim:
            self.pos += TRIM
        self.pos += len(RIGHT)
        if trim:
            self.pos += self._left_trim_length(self.input[self.pos:])
        self.ignore()
        return self.lex_text

    @staticmethod
    def _left_trim_length(s: str) -> int:
        return len(s) - len(s.lstrip(" \t\r\n"))

    def lex_right_delim(self):  # noqa: ANN201
        _, trim = self.at_right_delim()
        if trim:
            self.pos += TRIM
            self.ignore()
        self.pos += len(RIGHT)
        self.emit(RIGHT_DELIM)
        if trim:
            self.pos += self._left_trim_length(self.input[self.pos:])
            self.ignore()
        return self.lex_text

    def lex_inside_action(self):  # noqa: ANN201, C901 - one branch per character class, as Go's
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            self.error("unclosed left paren")
            return None
        c = self.next()
        if c == "":
            self.error("unclosed action")
            return None
        if _is_space(c):
            self.backup()
            return self.lex_space
        if c == "=":
            self.emit(ASSIGN)
        elif c == ":":
            if self.next() != "=":
                self.error("expected :=")
                return None
            self.emit(DECLARE)
        elif c == "|":
            self.emit(PIPE)
        elif c == '"':
            return self.lex_quote
        elif c == "`":
            return self.lex_raw_quote
        elif c == "$":
            return self.lex_variable
        elif c == "'":
            return self.lex_char
        elif c == "." and self.pos < len(self.input) and not ("0" <= self.input[self.pos] <= "9"):
            return self.lex_field
        elif c in "+-." or "0" <= c <= "9":
            self.backup()
            return self.lex_number
        elif _is_alnum(c):
            self.backup()
            return self.lex_identifier
        elif c == "(":
            self.emit(LEFT_PAREN)
            self.paren_depth += 1
        elif c == ")":
            self.emit(RIGHT_PAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                self.error(f"unexpected right paren {_unicode_name(c)}")
                return None
        elif ord(c) < 0x80 and c.isprintable():
            self.emit(CHAR)
        else:
            self.error(f"unrecognized character in action: {_unicode_name(c)}")
            return None
        return self.lex_inside_action

    def lex_space(self):  # noqa: ANN201
        spaces = 0
        while _is_space(self.peek()):
            self.next()
            spaces += 1
        rest = self.input[self.pos - 1:]
        if len(rest) >= 2 and _is_space(rest[0]) and rest[1] == "-" and rest[TRIM:].startswith(RIGHT):
            self.backup()
            if spaces == 1:
                return self.lex_right_delim
        self.emit(SPACE)
        return self.lex_inside_action

    def lex_identifier(self):  # noqa: ANN201
        while True:
            c = self.next()
            if _is_alnum(c):
                continue
            self.backup()
            word = self.input[self.start:self.pos]
            if not self.at_terminator():
                self.error(f"bad character {_unicode_name(c)}")
                return None
            kw = KEYWORDS.get(word)
            if kw is not None and kw != "dot":
                if (kw == "break" and not self.break_ok) or (kw == "continue" and not self.continue_ok):
                    self.emit(IDENTIFIER)
                else:
                    self.emit(kw)
            elif word[0] == ".":
                self.emit(FIELD)
            elif word in ("true", "false"):
                self.emit(BOOL)
            else:
                self.emit(IDENTIFIER)
            return self.lex_inside_action

    def lex_field(self):  # noqa: ANN201
        return self._field_or_variable(FIELD)

    def lex_variable(self):  # noqa: ANN201
        if self.at_terminator():
            self.emit(VARIABLE)
            return self.lex_inside_action
        return self._field_or_variable(VARIABLE)

    def _field_or_variable(self, kind: str):  # noqa: ANN202
        if self.at_terminator():
            self.emit(VARIABLE if kind == VARIABLE else "dot")
            return self.lex_inside_action
        while True:
            c = self.next()
            if not _is_alnum(c):
                self.backup()
                break
        if not self.at_terminator():
            self.error(f"bad character {_unicode_name(c)}")
            return None
        self.emit(kind)
        return self.lex_inside_action

    def _scan_quoted(self, quote: str, message: str) -> bool:
        while True:
            c = self.next()
            if c == "\\":
                c = self.next()
                if c not in ("", "\n"):
                    continue
            if c in ("", "\n"):
                self.error(message)
                return False
            if c == quote:
                return True

    def lex_char(self):  # noqa: ANN201
        if not self._scan_quoted("'", "unterminated character constant"):
            return None
        self.emit(CHAR_CONSTANT)
        return self.lex_inside_action

    def lex_quote(self):  # noqa: ANN201
        if not self._scan_quoted('"', "unterminated quoted string"):
            return None
        self.emit(STRING)
        return self.lex_inside_action

    def lex_raw_quote(self):  # noqa: ANN201
        while True:
            c = self.next()
            if c == "":
                self.error("unterminated raw quoted string")
                return None
            if c == "`":
                break
        self.emit(RAW_STRING)
        return self.lex_inside_action

    def lex_number(self):  # noqa: ANN201
        if not self._scan_number():
            self.error(f"bad number syntax: {self._quoted_so_far()}")
            return None
        if self.peek() in ("+", "-"):
            if not self._scan_number() or self.input[self.pos - 1] != "i":
                self.error(f"bad number syntax: {self._quoted_so_far()}")
                return None
            self.emit(COMPLEX)
        else:
            self.emit(NUMBER)
        return self.lex_inside_action

    def _quoted_so_far(self) -> str:
        return quote(self.input[self.start:self.pos])

    def _scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.next()
            return False
        return True


def lex(text: str) -> List[Item]:
    return Lexer(text).items


__all__ = ["Item", "Lexer", "lex"]
