"""A small, fast CEL evaluator for CRD `x-kubernetes-validations` rules.

We reuse cel-python's (celpy) lark grammar to *parse* rules, but compile the parse tree into plain
Python closures over plain Python values (dict/list/str/int/float/bool/None) instead of using celpy's
interpreter: celpy evaluates one rule in ~0.5 ms (its typing-heavy tree walk dominates), which would
make a HostedCluster validation cost tens of ms. The closures here run a typical rule in a few µs.

Semantics follow the CEL spec as implemented by cel-go (which the kube-apiserver uses):
- errors are exceptions (CelError); `&&`/`||` absorb an error when the other side decides the result,
  `all`/`exists` do the same across elements;
- heterogeneous equality is false (`1 == 'a'`), numbers compare across int/double;
- selecting a missing field is the error "no such key: <name>"; `has()` tests presence.
Anything we cannot evaluate faithfully raises UnsupportedCel at compile time so the caller can skip
the rule (and report it) rather than guess.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import lark
from celpy.celparser import CELParseError, CELParser

Activation = dict[str, Any]
Evaluator = Callable[[Activation], Any]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class CelError(Exception):
    """A CEL runtime error (cel-go's types.Err), e.g. `no such key: foo`."""


class UnsupportedCel(Exception):
    """The rule uses syntax or a function this evaluator does not implement."""


class Optional_:
    """CEL optional value (optional.of / optional.none / `x.?y`)."""

    __slots__ = ("has", "value")

    def __init__(self, has: bool, value: Any = None) -> None:
        self.has = has
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optional_) and self.has == other.has and (not self.has or cel_eq(self.value, other.value))

    def __hash__(self) -> int:
        return hash(self.has)

    def __repr__(self) -> str:
        return f"optional.of({self.value!r})" if self.has else "optional.none()"


NONE = Optional_(False)


class SetList(list):  # type: ignore[type-arg]
    """A list with x-kubernetes-list-type=set: equality ignores order (k8s unstructuredSetList)."""


class MapList(list):  # type: ignore[type-arg]
    """A list with x-kubernetes-list-type=map: equality matches entries by key (k8s unstructuredMapList)."""

    keys: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Value semantics


def type_name(v: Any) -> str:
    if v is None:
        return "null_type"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bytes):
        return "bytes"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, _dt.timedelta):
        return "google.protobuf.Duration"
    if isinstance(v, _dt.datetime):
        return "google.protobuf.Timestamp"
    if isinstance(v, Optional_):
        return "optional_type"
    return getattr(v, "cel_type", type(v).__name__)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def cel_eq(a: Any, b: Any) -> bool:
    if _is_num(a):
        return _is_num(b) and a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        if isinstance(a, MapList) or isinstance(b, MapList):
            keys = a.keys if isinstance(a, MapList) else b.keys  # type: ignore[union-attr]
            return _maplist_eq(a, b, keys)
        if isinstance(a, SetList) or isinstance(b, SetList):
            return all(any(cel_eq(x, y) for y in b) for x in a) and all(any(cel_eq(y, x) for x in a) for y in b)
        return all(cel_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if not isinstance(b, dict) or len(a) != len(b):
            return False
        for k, v in a.items():
            if k not in b or not cel_eq(v, b[k]):
                return False
        return True
    if a is None or b is None:
        return a is None and b is None
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool(a == b)


def _maplist_eq(a: list, b: list, keys: tuple[str, ...]) -> bool:  # type: ignore[type-arg]
    def key(e: Any) -> tuple:  # type: ignore[type-arg]
        return tuple(repr(e.get(k)) if isinstance(e, dict) else None for k in keys)

    index = {key(e): e for e in b}
    for e in a:
        other = index.get(key(e))
        if other is None or not cel_eq(e, other):
            return False
    return True


def _lt(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a < b
    if type(a) is type(b) and isinstance(a, (str, bytes, bool, _dt.timedelta, _dt.datetime)):
        return a < b  # type: ignore[operator]
    raise CelError(f"no such overload: {type_name(a)} < {type_name(b)}")


def _check_int(v: int) -> int:
    if v < INT64_MIN or v > INT64_MAX:
        raise CelError("integer overflow")
    return v


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        raise CelError("no such overload: bool + bool")
    if isinstance(a, int) and isinstance(b, int):
        return _check_int(a + b)
    if isinstance(a, float) and isinstance(b, float):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, bytes) and isinstance(b, bytes):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return list(a) + list(b)
    if isinstance(a, (_dt.datetime, _dt.timedelta)) and isinstance(b, _dt.timedelta):
        return a + b
    if isinstance(a, _dt.timedelta) and isinstance(b, _dt.datetime):
        return b + a
    raise CelError(f"no such overload: {type_name(a)} + {type_name(b)}")


def _sub(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        return _check_int(a - b)
    if isinstance(a, float) and isinstance(b, float):
        return a - b
    if isinstance(a, (_dt.datetime, _dt.timedelta)) and isinstance(b, (_dt.datetime, _dt.timedelta)):
        return a - b
    raise CelError(f"no such overload: {type_name(a)} - {type_name(b)}")


def _mul(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _check_int(a * b)
    if isinstance(a, float) and isinstance(b, float):
        return a * b
    raise CelError(f"no such overload: {type_name(a)} * {type_name(b)}")


def _div(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            raise CelError("division by zero")
        q = abs(a) // abs(b)  # CEL (Go) truncates toward zero
        return _check_int(q if (a >= 0) == (b >= 0) else -q)
    if isinstance(a, float) and isinstance(b, float):
        return a / b if b else (float("inf") if a > 0 else float("-inf") if a < 0 else float("nan"))
    raise CelError(f"no such overload: {type_name(a)} / {type_name(b)}")


def _mod(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            raise CelError("modulus by zero")
        r = abs(a) % abs(b)
        return r if a >= 0 else -r
    raise CelError(f"no such overload: {type_name(a)} % {type_name(b)}")


def _in(item: Any, container: Any) -> bool:
    if isinstance(container, list):
        return any(cel_eq(item, x) for x in container)
    if isinstance(container, dict):
        return item in container if isinstance(item, str) else any(cel_eq(item, k) for k in container)
    raise CelError(f"no such overload: {type_name(item)} in {type_name(container)}")


def _index(obj: Any, idx: Any) -> Any:
    if isinstance(obj, Optional_):
        if not obj.has:
            return NONE
        try:
            return Optional_(True, _index(obj.value, idx))
        except CelError:
            return NONE
    if isinstance(obj, list):
        if type(idx) is float and idx.is_integer():
            idx = int(idx)
        if type(idx) is not int:
            raise CelError(f"no such overload: list[{type_name(idx)}]")
        if idx < 0 or idx >= len(obj):
            raise CelError(f"index out of bounds: {idx}")
        return obj[idx]
    if isinstance(obj, dict):
        if idx in obj:
            return obj[idx]
        raise CelError(f"no such key: {idx}")
    raise CelError(f"no such overload: {type_name(obj)}[{type_name(idx)}]")


def _select(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        try:
            return obj[name]
        except KeyError:
            raise CelError(f"no such key: {name}") from None
    if isinstance(obj, Optional_):
        # cel-go: qualifying an optional value keeps it optional (present only if every step is present).
        if obj.has and isinstance(obj.value, dict) and name in obj.value:
            return Optional_(True, obj.value[name])
        return NONE
    raise CelError(f"no such key: {name}" if obj is None else f"type '{type_name(obj)}' does not support field selection")


def _opt_select(obj: Any, name: str) -> Any:
    if isinstance(obj, Optional_):
        return _select(obj, name)
    if isinstance(obj, dict):
        return Optional_(True, obj[name]) if name in obj else NONE
    raise CelError(f"type '{type_name(obj)}' does not support field selection")


def _truth(v: Any) -> bool:
    if v is True or v is False:
        return v
    raise CelError(f"no such overload: expected bool, got {type_name(v)}")


# ---------------------------------------------------------------------------------------------
# Literals


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "'": "'", "\\": "\\", "`": "`", "?": "?"}
_ESC_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)


def _unescape(body: str) -> str:
    def repl(m: re.Match[str]) -> str:
        s = m.group(1)
        if s[0] in "xuU":
            return chr(int(s[1:], 16))
        if s[0].isdigit():
            return chr(int(s, 8))
        if s in _ESCAPES:
            return _ESCAPES[s]
        raise UnsupportedCel(f"invalid escape \\{s}")

    return _ESC_RE.sub(repl, body)


def _string_literal(text: str) -> str:
    raw = text[0] in "rR"
    if raw:
        text = text[1:]
    q = 3 if text[:3] in ('"""', "'''") else 1
    body = text[q:-q]
    return body if raw else _unescape(body)


def _literal(tok: lark.Token) -> Any:
    t, v = tok.type, tok.value
    if t == "INT_LIT":
        return int(v, 0) if "x" not in v else (-int(v[3:], 16) if v.startswith("-") else int(v[2:], 16))
    if t == "UINT_LIT":
        return int(v[:-1], 0)
    if t == "FLOAT_LIT":
        return float(v)
    if t in ("STRING_LIT", "MLSTRING_LIT"):
        return _string_literal(v)
    if t == "BYTES_LIT":
        return _string_literal(v[1:]).encode("latin-1", "backslashreplace")
    if t == "BOOL_LIT":
        return v == "true"
    if t == "NULL_LIT":
        return None
    raise UnsupportedCel(f"literal {t}")


# ---------------------------------------------------------------------------------------------
# Compiler: lark tree -> closures


_OPT_PREFIX = "__optsel__"
_MACROS = {"all", "exists", "exists_one", "filter", "map"}


@dataclass
class FunctionTable:
    """Functions callable from rules: `globals` by name f(args), `members` by name recv.f(args)."""

    globals: dict[str, Callable[..., Any]]
    members: dict[str, Callable[..., Any]]


class _Compiler:
    def __init__(self, funcs: FunctionTable, variables: set[str]) -> None:
        self.funcs = funcs
        self.variables = set(variables)
        self.used: set[str] = set()

    def compile(self, t: Any) -> Evaluator:
        method = getattr(self, "c_" + t.data, None)
        if method is None:
            raise UnsupportedCel(f"syntax {t.data}")
        return method(t)  # type: ignore[no-any-return]

    # --- passthrough / binary levels

    def c_expr(self, t: lark.Tree) -> Evaluator:
        if len(t.children) == 1:
            return self.compile(t.children[0])
        cond, a, b = (self.compile(c) for c in t.children)

        def ternary(act: Activation) -> Any:
            return a(act) if _truth(cond(act)) else b(act)

        return ternary

    def c_conditionalor(self, t: lark.Tree) -> Evaluator:
        if len(t.children) == 1:
            return self.compile(t.children[0])
        left, right = self.compile(t.children[0]), self.compile(t.children[1])

        def or_(act: Activation) -> Any:
            try:
                if _truth(left(act)):
                    return True
            except CelError:
                if _truth(right(act)):
                    return True
                raise
            return _truth(right(act))

        return or_

    def c_conditionaland(self, t: lark.Tree) -> Evaluator:
        if len(t.children) == 1:
            return self.compile(t.children[0])
        left, right = self.compile(t.children[0]), self.compile(t.children[1])

        def and_(act: Activation) -> Any:
            try:
                if not _truth(left(act)):
                    return False
            except CelError:
                if not _truth(right(act)):
                    return False
                raise
            return _truth(right(act))

        return and_

    def _binary(self, t: lark.Tree, ops: dict[str, Callable[[Any, Any], Any]]) -> Evaluator:
        if len(t.children) == 1:
            return self.compile(t.children[0])
        op_node, rhs = t.children
        op = ops[op_node.data]
        left, right = self.compile(op_node.children[0]), self.compile(rhs)
        return lambda act: op(left(act), right(act))

    def c_relation(self, t: lark.Tree) -> Evaluator:
        return self._binary(
            t,
            {
                "relation_eq": cel_eq,
                "relation_ne": lambda a, b: not cel_eq(a, b),
                "relation_lt": _lt,
                "relation_gt": lambda a, b: _lt(b, a),
                "relation_le": lambda a, b: not _lt(b, a),
                "relation_ge": lambda a, b: not _lt(a, b),
                "relation_in": _in,
            },
        )

    def c_addition(self, t: lark.Tree) -> Evaluator:
        return self._binary(t, {"addition_add": _add, "addition_sub": _sub})

    def c_multiplication(self, t: lark.Tree) -> Evaluator:
        return self._binary(t, {"multiplication_mul": _mul, "multiplication_div": _div, "multiplication_mod": _mod})

    def c_unary(self, t: lark.Tree) -> Evaluator:
        if len(t.children) == 1:
            return self.compile(t.children[0])
        op, operand = t.children[0].data, self.compile(t.children[1])
        if op == "unary_not":
            return lambda act: not _truth(operand(act))

        def neg(act: Activation) -> Any:
            v = operand(act)
            if _is_num(v):
                return _check_int(-v) if isinstance(v, int) else -v
            raise CelError(f"no such overload: -{type_name(v)}")

        return neg

    def c_member(self, t: lark.Tree) -> Evaluator:
        return self.compile(t.children[0])

    def c_primary(self, t: lark.Tree) -> Evaluator:
        return self.compile(t.children[0])

    def c_paren_expr(self, t: lark.Tree) -> Evaluator:
        return self.compile(t.children[0])

    # --- leaves

    def c_literal(self, t: lark.Tree) -> Evaluator:
        value = _literal(t.children[0])
        return lambda act: value

    def c_ident(self, t: lark.Tree) -> Evaluator:
        name = str(t.children[0])
        if name not in self.variables:
            raise UnsupportedCel(f"undeclared reference to '{name}'")
        self.used.add(name)

        def ident(act: Activation) -> Any:
            return act[name]

        return ident

    def c_list_lit(self, t: lark.Tree) -> Evaluator:
        items = [self.compile(c) for c in t.children[0].children] if t.children else []
        return lambda act: [f(act) for f in items]

    def c_map_lit(self, t: lark.Tree) -> Evaluator:
        parts = [self.compile(c) for c in t.children[0].children] if t.children else []
        pairs = list(zip(parts[0::2], parts[1::2]))
        return lambda act: {k(act): v(act) for k, v in pairs}

    def _args(self, t: lark.Tree, at: int) -> list[Any]:
        if len(t.children) > at and isinstance(t.children[at], lark.Tree) and t.children[at].data == "exprlist":
            return list(t.children[at].children)
        return []

    # --- selection, indexing, calls

    def c_member_dot(self, t: lark.Tree) -> Evaluator:
        target_tree, name_tok = t.children
        name = str(name_tok)
        target = self.compile(target_tree)
        if name.startswith(_OPT_PREFIX):
            field = name[len(_OPT_PREFIX):]
            return lambda act: _opt_select(target(act), field)
        return lambda act: _select(target(act), name)

    def c_member_index(self, t: lark.Tree) -> Evaluator:
        target, idx = self.compile(t.children[0]), self.compile(t.children[1])
        return lambda act: _index(target(act), idx(act))

    def c_ident_arg(self, t: lark.Tree) -> Evaluator:
        name = str(t.children[0])
        arg_trees = self._args(t, 1)
        if name == "has":
            return self._has(arg_trees)
        if name == "dyn" and len(arg_trees) == 1:
            return self.compile(arg_trees[0])
        fn = self.funcs.globals.get(name)
        if fn is None:
            raise UnsupportedCel(f"function {name}() not supported")
        args = [self.compile(a) for a in arg_trees]
        return _call(fn, args)

    def _has(self, arg_trees: list[Any]) -> Evaluator:
        if len(arg_trees) != 1:
            raise UnsupportedCel("has() takes one argument")
        node = _unwrap(arg_trees[0])
        if not (isinstance(node, lark.Tree) and node.data == "member_dot"):
            raise UnsupportedCel("has() argument must be a field selection")
        target = self.compile(node.children[0])
        name = str(node.children[1])

        def has(act: Activation) -> bool:
            obj = target(act)
            if isinstance(obj, dict):
                return name in obj
            if isinstance(obj, Optional_):
                return obj.has and isinstance(obj.value, dict) and name in obj.value
            raise CelError(f"invalid type for field selection: {type_name(obj)}")

        return has

    def c_member_dot_arg(self, t: lark.Tree) -> Evaluator:
        target_tree, name_tok = t.children[0], str(t.children[1])
        arg_trees = self._args(t, 2)
        # `optional.of(x)` / `optional.none()` parse as a method call on the identifier `optional`.
        base = _unwrap(target_tree)
        if isinstance(base, lark.Tree) and base.data == "ident" and str(base.children[0]) not in self.variables:
            qualified = f"{base.children[0]}.{name_tok}"
            fn = self.funcs.globals.get(qualified)
            if fn is None:
                raise UnsupportedCel(f"function {qualified}() not supported")
            return _call(fn, [self.compile(a) for a in arg_trees])
        if name_tok in _MACROS and arg_trees:
            return self._macro(name_tok, self.compile(target_tree), arg_trees)
        fn = self.funcs.members.get(name_tok)
        if fn is None:
            raise UnsupportedCel(f"function {name_tok}() not supported")
        return _call(fn, [self.compile(target_tree)] + [self.compile(a) for a in arg_trees])

    def _macro(self, name: str, target: Evaluator, arg_trees: list[Any]) -> Evaluator:
        var_node = _unwrap(arg_trees[0])
        if not (isinstance(var_node, lark.Tree) and var_node.data == "ident"):
            raise UnsupportedCel(f"{name}() needs an identifier")
        var = str(var_node.children[0])
        had = var in self.variables
        self.variables.add(var)
        try:
            bodies = [self.compile(a) for a in arg_trees[1:]]
        finally:
            if not had:
                self.variables.discard(var)
        if name in ("all", "exists", "exists_one", "filter") and len(bodies) != 1:
            raise UnsupportedCel(f"{name}() with {len(arg_trees)} arguments")
        if name == "map" and len(bodies) not in (1, 2):
            raise UnsupportedCel("map() arity")

        def elements(act: Activation) -> list[Any]:
            coll = target(act)
            if isinstance(coll, list):
                return coll
            if isinstance(coll, dict):
                return list(coll.keys())
            raise CelError(f"no such overload: {name} on {type_name(coll)}")

        body = bodies[0]
        if name == "all":

            def all_(act: Activation) -> bool:
                err: CelError | None = None
                for e in elements(act):
                    try:
                        if not _truth(body({**act, var: e})):
                            return False
                    except CelError as ex:
                        err = err or ex
                if err:
                    raise err
                return True

            return all_
        if name == "exists":

            def exists(act: Activation) -> bool:
                err: CelError | None = None
                for e in elements(act):
                    try:
                        if _truth(body({**act, var: e})):
                            return True
                    except CelError as ex:
                        err = err or ex
                if err:
                    raise err
                return False

            return exists
        if name == "exists_one":
            return lambda act: sum(1 for e in elements(act) if _truth(body({**act, var: e}))) == 1
        if name == "filter":
            return lambda act: [e for e in elements(act) if _truth(body({**act, var: e}))]
        if len(bodies) == 1:
            return lambda act: [body({**act, var: e}) for e in elements(act)]
        pred, fn = bodies
        return lambda act: [fn({**act, var: e}) for e in elements(act) if _truth(pred({**act, var: e}))]

    def c_dot_ident(self, t: lark.Tree) -> Evaluator:
        raise UnsupportedCel("leading-dot identifiers")

    def c_dot_ident_arg(self, t: lark.Tree) -> Evaluator:
        raise UnsupportedCel("leading-dot function calls")

    def c_member_object(self, t: lark.Tree) -> Evaluator:
        raise UnsupportedCel("message construction")


def _unwrap(node: Any) -> Any:
    """Descend through single-child precedence levels to the meaningful node."""
    while isinstance(node, lark.Tree) and len(node.children) == 1 and node.data in (
        "expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member", "primary",
    ):
        node = node.children[0]
    return node


def _call(fn: Callable[..., Any], args: list[Evaluator]) -> Evaluator:
    def wrapped(*vals: Any) -> Any:
        try:
            return fn(*vals)
        except (CelError, UnsupportedCel):
            raise
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as ex:
            # Wrong argument types at runtime: cel-go reports "no such overload".
            raise CelError(f"no such overload: {ex}") from None

    if len(args) == 0:
        return lambda act: wrapped()
    if len(args) == 1:
        a0 = args[0]
        return lambda act: wrapped(a0(act))
    if len(args) == 2:
        a0, a1 = args
        return lambda act: wrapped(a0(act), a1(act))
    return lambda act: wrapped(*(a(act) for a in args))


# ---------------------------------------------------------------------------------------------
# Public entry points


_parser: CELParser | None = None


def _parse(text: str) -> lark.Tree:
    global _parser
    if _parser is None:
        _parser = CELParser()  # builds the lark LALR parser once (~0.1 s), so only on first rule use
    try:
        return _parser.parse(text)
    except CELParseError as ex:
        raise UnsupportedCel(f"parse error: {str(ex).splitlines()[0]}") from None


def _rewrite_optional_select(text: str) -> str:
    """`a.?b` (optional field selection) is not in celpy's grammar: rewrite it, outside string
    literals, to a member selection of a marker identifier that the compiler turns into _opt_select."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            q = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(q)
            while j < n and text[j : j + len(q)] != q:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + len(q)])
            i = j + len(q)
            continue
        if text.startswith(".?", i) and i + 2 < n and (text[i + 2].isalpha() or text[i + 2] == "_"):
            out.append("." + _OPT_PREFIX)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class Program:
    source: str
    evaluate: Evaluator
    variables_used: frozenset[str]


@lru_cache(maxsize=4096)
def _compile_cached(text: str, funcs_id: int, variables: frozenset[str]) -> Program:
    funcs = _FUNC_TABLES[funcs_id]
    src = _rewrite_optional_select(text) if ".?" in text else text
    tree = _parse(src)
    comp = _Compiler(funcs, set(variables))
    ev = comp.compile(tree)
    return Program(text, ev, frozenset(comp.used))


_FUNC_TABLES: dict[int, FunctionTable] = {}


def compile_cel(text: str, funcs: FunctionTable, variables: frozenset[str]) -> Program:
    """Compile a CEL expression; raises UnsupportedCel when it cannot be evaluated faithfully.
    Programs are cached by source text, so rules repeated across CRDs compile once."""
    _FUNC_TABLES.setdefault(id(funcs), funcs)
    return _compile_cached(text, id(funcs), variables)
