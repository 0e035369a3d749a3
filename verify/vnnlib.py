"""Parser of the VNN-LIB subset used by VNN-COMP.

Supported: ``(declare-const X_i Real)`` / ``(declare-const Y_i Real)``;
``(assert F)`` where F is built from ``and``, ``or``, ``<=``, ``>=``, ``=``
over linear terms (numbers, variables, ``+``, ``-``, ``*`` by a constant);
comments after ``;``.  Atoms may mention only inputs (then they must bound
one variable: the input boxes) or only outputs (the unsafe region).  The
conjunction of all asserts is brought to disjunctive normal form and grouped
by input box into a :class:`~nnaudit.verify.spec.Property`: a list of (box,
unsafe region as a disjunction of conjunctions of ``C y + d <= 0``).

Every error is a :class:`~nnaudit.errors.SpecError` that names
``file:line:column``, what was expected and what was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnaudit.errors import SpecError
from nnaudit.verify.spec import Box, Property, Region

#: Largest DNF (number of conjunctions) accepted before giving up.
MAX_TERMS = 100_000
#: Deepest nesting of parentheses accepted (VNN-COMP files nest 3-6 deep); deeper is refused at its '('.
MAX_DEPTH = 100
#: Largest X_i / Y_i index accepted (10^7 inputs: 40 times ImageNet's 224x224x3).
MAX_INDEX = 10_000_000
_TOKEN = re.compile(r"\s+|;[^\n]*|\(|\)|[^\s();]+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_VAR = re.compile(r"([XY])_(\d+)$")


@dataclass(frozen=True)
class _Tok:
    text: str
    line: int
    col: int


@dataclass(frozen=True)
class _List:
    items: list
    line: int
    col: int


def _short(text: str, limit: int = 40) -> str:
    """``repr(text)`` capped to ``limit`` characters, so an error never echoes much of a file."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source

    def error(self, where: _Tok | _List | tuple[int, int], msg: str) -> SpecError:
        line, col = (where.line, where.col) if not isinstance(where, tuple) else where
        return SpecError(f"{self.source}:{line}:{col}: {msg}")

    def _desc(self, node: _Tok | _List) -> str:
        if isinstance(node, _Tok):
            return _short(node.text)
        head = node.items[0].text if node.items and isinstance(node.items[0], _Tok) else "..."
        return f"a list ({_short(head)} ...)"

    # -- s-expressions -------------------------------------------------------
    def tokens(self) -> list[_Tok]:
        out, line, line_start = [], 1, 0
        for m in _TOKEN.finditer(self.text):
            s = m.group()
            if not s.isspace() and not s.startswith(";"):
                out.append(_Tok(s, line, m.start() - line_start + 1))
            nl = s.count("\n")
            if nl:
                line += nl
                line_start = m.start() + s.rfind("\n") + 1
        return out

    def sexprs(self) -> list[_List]:
        stack: list[_List] = []
        top: list[_List] = []
        for tok in self.tokens():
            if tok.text == "(":
                if len(stack) >= MAX_DEPTH:
                    raise self.error(tok, f"expressions nested deeper than {MAX_DEPTH} levels")
                stack.append(_List([], tok.line, tok.col))
            elif tok.text == ")":
                if not stack:
                    raise self.error(tok, "unbalanced ')': no open '(' to close")
                done = stack.pop()
                (stack[-1].items if stack else top).append(done)
            elif stack:
                stack[-1].items.append(tok)
            else:
                raise self.error(tok, f"expected '(' to start a command, got {_short(tok.text)}")
        if stack:
            raise self.error(stack[-1], "unclosed '(': the file ends inside this expression")
        return top


def parse(path: str | Path) -> Property:
    """Parse a .vnnlib file into a :class:`Property` (errors name file:line:column)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read the VNN-LIB file: {exc}") from exc
    return parse_string(text, source=str(p), name=p.name)


def parse_string(text: str, *, source: str = "<string>", name: str = "property") -> Property:
    """Parse VNN-LIB text; ``source`` is used in error messages."""
    return _Interpreter(_Parser(text, source)).run(name)


class _Interpreter:
    def __init__(self, parser: _Parser) -> None:
        self.p = parser
        self.declared: dict[str, set[int]] = {"X": set(), "Y": set()}
        self.asserts: list[_List] = []

    def run(self, name: str) -> Property:
        for cmd in self.p.sexprs():
            self.command(cmd)
        n_in, n_out = self._count("X"), self._count("Y")
        terms: list[list[tuple]] = [[]]
        for a in self.asserts:
            terms = _and(terms, self.formula(a.items[1]), self.p, a)
        return _group(terms, n_in, n_out, self.p, name)

    def _count(self, kind: str) -> int:
        ids = self.declared[kind]
        if not ids:
            raise SpecError(f"{self.p.source}: no {kind}_i variables declared")
        if max(ids) + 1 != len(ids):  # distinct indices from 0: complete exactly when max + 1 == count
            missing = next(i for i, j in enumerate(sorted(ids)) if i != j)
            raise SpecError(f"{self.p.source}: {kind}_{missing} is not declared (expected {kind}_0..{kind}_{max(ids)})")
        return len(ids)

    def command(self, cmd: _List) -> None:
        head = cmd.items[0] if cmd.items else None
        if not isinstance(head, _Tok):
            raise self.p.error(cmd, "expected a command (declare-const or assert), got " + ("()" if head is None else self.p._desc(head)))
        if head.text == "declare-const":
            self.declare(cmd)
        elif head.text == "assert":
            if len(cmd.items) != 2:
                raise self.p.error(cmd, f"expected (assert FORMULA), got {len(cmd.items) - 1} arguments")
            self.asserts.append(cmd)
        elif head.text in ("set-logic", "set-info", "check-sat", "get-model", "exit"):
            return
        else:
            raise self.p.error(head, f"expected declare-const or assert, got {_short(head.text)}")

    def declare(self, cmd: _List) -> None:
        if len(cmd.items) != 3 or not all(isinstance(t, _Tok) for t in cmd.items[1:]):
            raise self.p.error(cmd, "expected (declare-const NAME Real)")
        var, sort = cmd.items[1], cmd.items[2]
        m = _VAR.match(var.text)
        if not m:
            raise self.p.error(var, f"expected a variable named X_i or Y_i, got {_short(var.text)}")
        if sort.text != "Real":
            raise self.p.error(sort, f"expected sort Real, got {_short(sort.text)}")
        ids, idx = self.declared[m.group(1)], self.index(var, m.group(2))
        if idx in ids:
            raise self.p.error(var, f"{_short(var.text)} is declared twice")
        ids.add(idx)

    # -- formulas and terms: evaluated bottom-up with an explicit stack (no recursion) ----
    def evaluate(self, root: _Tok | _List, role: str) -> object:
        """The value of ``root`` as a ``role`` ("formula": DNF as a list of conjunctions of
        atoms; "term": a linear term), children first, without Python recursion."""
        todo: list[tuple[_Tok | _List, str, bool]] = [(root, role, False)]
        values: list[object] = []
        while todo:
            node, kind, ready = todo.pop()
            if ready:
                n = len(node.items) - 1
                args = values[len(values) - n:]
                del values[len(values) - n:]
                values.append(self.combine(node, kind, args))
                continue
            children = self.children(node, kind)
            if children is None:
                values.append(self.term_leaf(node))
                continue
            todo.append((node, kind, True))
            todo.extend((child, child_kind, False) for child, child_kind in reversed(children))
        return values[0]

    def formula(self, node: _Tok | _List) -> list[list[tuple]]:
        return self.evaluate(node, "formula")  # type: ignore[return-value]

    def children(self, node: _Tok | _List, kind: str) -> list[tuple[_Tok | _List, str]] | None:
        """What ``node`` needs evaluated first (checked here, before any work); None for a leaf term."""
        if kind == "term":
            if isinstance(node, _Tok):
                return None
            if not node.items or not isinstance(node.items[0], _Tok):
                raise self.p.error(node, f"expected a term, got {self.p._desc(node)}")
            if node.items[0].text not in ("+", "-", "*") or len(node.items) < 2:
                raise self.p.error(node, f"expected a term (+, -, * with arguments), got {self.p._desc(node)}")
            return [(a, "term") for a in node.items[1:]]
        if not isinstance(node, _List) or not node.items or not isinstance(node.items[0], _Tok):
            raise self.p.error(node, f"expected a formula (and/or/<=/>=/=), got {self.p._desc(node)}")
        op, args = node.items[0].text, node.items[1:]
        if op in ("and", "or"):
            if not args:
                raise self.p.error(node, f"expected at least one argument to {op}")
            return [(a, "formula") for a in args]
        if op in ("<=", ">=", "="):
            if len(args) != 2:
                raise self.p.error(node, f"expected ({op} TERM TERM), got {len(args)} arguments")
            return [(a, "term") for a in args]
        if op in ("<", ">"):
            raise self.p.error(node.items[0], f"strict inequality {_short(op)} is not supported (use <= or >=)")
        raise self.p.error(node.items[0], f"expected and, or, <=, >= or =, got {_short(op)}")

    def combine(self, node: _List, kind: str, args: list) -> object:
        """The value of ``node`` from its children's values ``args``."""
        op = node.items[0].text
        if kind == "formula":
            return self.combine_formula(node, op, args)
        if op == "+":
            out: tuple[dict, float] = ({}, 0.0)
            for a in args:
                out = _add(out, a)
            return out
        if op == "-":
            if len(args) == 1:
                return _scale(args[0], -1.0)
            out = args[0]
            for a in args[1:]:
                out = _sub(out, a)
            return out
        out = ({}, 1.0)
        for a in args:
            if out[0] and a[0]:
                raise self.p.error(node, "expected a linear term, got a product of two variables")
            out = _scale(a, out[1]) if not out[0] else _scale(out, a[1])
        return out

    def combine_formula(self, node: _List, op: str, args: list) -> list[list[tuple]]:
        if op == "or":
            out = [t for part in args for t in part]
            if len(out) > MAX_TERMS:
                raise self.p.error(node, f"the formula expands to more than {MAX_TERMS} cases")
            return out
        if op == "and":
            acc: list[list[tuple]] = [[]]
            for part in args:
                acc = _and(acc, part, self.p, node)
            return acc
        a, b = args
        le = _sub(a, b) if op == "<=" else _sub(b, a)
        atoms = [self.atom(le, node)]
        if op == "=":
            atoms.append(self.atom(_sub(b, a), node))
        return [atoms]

    def atom(self, lin: tuple[dict, float], node: _List) -> tuple:
        """``sum coef * var + const <= 0`` as ("X" | "Y", {idx: coef}, const)."""
        coefs, const = lin
        kinds = {k for k, _ in coefs}
        if len(kinds) > 1:
            raise self.p.error(node, "expected a constraint over inputs only or outputs only, got one mixing X and Y")
        kind = kinds.pop() if kinds else "Y"
        return (kind, {i: c for (_, i), c in coefs.items() if c != 0.0}, const, (node.line, node.col))

    def term_leaf(self, node: _Tok) -> tuple[dict, float]:
        """A number or a declared variable."""
        if _NUMBER.match(node.text):
            value = float(node.text)
            if not np.isfinite(value):
                raise self.p.error(node, f"expected a finite number, got {_short(node.text)}")
            return {}, value
        m = _VAR.match(node.text)
        if m:
            kind, idx = m.group(1), self.index(node, m.group(2))
            if idx not in self.declared[kind]:
                raise self.p.error(node, f"{_short(node.text)} is used before it is declared")
            return {(kind, idx): 1.0}, 0.0
        raise self.p.error(node, f"expected a number or a declared variable, got {_short(node.text)}")

    def index(self, tok: _Tok, digits: str) -> int:
        """The index of ``X_i``/``Y_i``, refused above :data:`MAX_INDEX` (before it is converted)."""
        if len(digits.lstrip("0")) > len(str(MAX_INDEX)) or int(digits) > MAX_INDEX:
            raise self.p.error(tok, f"variable index {_short(digits)} is too large (at most {MAX_INDEX})")
        return int(digits)


def _add(a: tuple[dict, float], b: tuple[dict, float]) -> tuple[dict, float]:
    coefs = dict(a[0])
    for k, v in b[0].items():
        coefs[k] = coefs.get(k, 0.0) + v
    return coefs, a[1] + b[1]


def _scale(a: tuple[dict, float], s: float) -> tuple[dict, float]:
    return {k: v * s for k, v in a[0].items()}, a[1] * s


def _sub(a: tuple[dict, float], b: tuple[dict, float]) -> tuple[dict, float]:
    return _add(a, _scale(b, -1.0))


def _and(left: list[list[tuple]], right: list[list[tuple]], p: _Parser, where: _List) -> list[list[tuple]]:
    if len(left) * len(right) > MAX_TERMS:
        raise p.error(where, f"the conjunction expands to more than {MAX_TERMS} cases")
    return [a + b for a in left for b in right]


def _group(terms: list[list[tuple]], n_in: int, n_out: int, p: _Parser, name: str) -> Property:
    """Turn DNF terms into (box, region) cases, merging terms with equal boxes."""
    cases: dict[tuple, tuple[Box, list]] = {}
    empty: str | None = None  # the first empty input box, described for the error when every box is empty
    for term in terms:
        lo, hi = np.full(n_in, -np.inf), np.full(n_in, np.inf)
        rows: list[tuple[np.ndarray, float]] = []
        const_false = False
        for kind, coefs, const, pos in term:
            if kind == "X":
                if len(coefs) != 1:
                    if not coefs and const <= 0:
                        continue
                    if not coefs:
                        const_false = True
                        continue
                    raise p.error(pos, "expected an input constraint bounding one variable, got a linear combination of inputs")
                (i, c), = coefs.items()
                bound = -const / c
                if c > 0:
                    hi[i] = min(hi[i], bound)
                else:
                    lo[i] = max(lo[i], bound)
            else:
                row = np.zeros(n_out)
                for i, c in coefs.items():
                    row[i] = c
                rows.append((row, const))
        if const_false or np.any(lo > hi):
            empty = empty or _empty_box(lo, hi)
            continue  # an empty case: no input satisfies it
        free = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
        if free.size:
            raise SpecError(f"{p.source}: input X_{free[0]} has no {'lower' if not np.isfinite(lo[free[0]]) else 'upper'} "
                            f"bound in one of the input boxes (expected every input bounded)")
        key = (lo.tobytes(), hi.tobytes())
        if key not in cases:
            cases[key] = (Box(lo, hi), [])
        c = np.array([r for r, _ in rows]).reshape(len(rows), n_out)
        d = np.array([v for _, v in rows], dtype=np.float64)
        cases[key][1].append((c, d))
    if not terms:
        raise SpecError(f"{p.source}: no assert found")
    if not cases and empty:
        raise SpecError(f"{p.source}: no input satisfies the input constraints ({empty}); "
                        f"expected lower <= upper for every X_i")
    return Property(tuple((box, Region(tuple(disj))) for box, disj in cases.values()), name)


def _empty_box(lo: np.ndarray, hi: np.ndarray) -> str:
    """Why an input box is empty: its first variable with lower > upper, or a constant-false constraint."""
    bad = np.flatnonzero(lo > hi)
    if not bad.size:
        return "a constant input constraint is false"
    i = int(bad[0])
    return f"X_{i} has lower bound {lo[i]:g} > upper bound {hi[i]:g}"
