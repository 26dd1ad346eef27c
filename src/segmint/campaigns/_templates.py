"""Message templates: Jinja2 in a sandbox, compiled once, strict about fields, bounded.

A template is refused when it is compiled if it reaches for anything private (an
attribute or key starting with ``_``, or ``mro``, ``func_globals``, ``gi_frame`` ...) or
calls a method that changes data or can make a huge string; the sandbox refuses the same
at render time as a second line. ``StrictUndefined`` turns a field messages do not have
into an error, and :func:`check_templates` renders every template against the full field
schema at plan time, so a typo never reaches an inbox.

Bounded work
------------
The sandbox is Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no list or
dict is changed by a template) with these limits per message, each a
:class:`~segmint.errors.TemplateError` naming the template and the limit:

* a value computed in a template (``*``, ``+``, ``%``, ``~``, the filters that pad, wrap,
  replace, join, format) has at most :data:`MAX_VALUE` characters (lists count their
  items), checked **before** it is built; integers at most :data:`MAX_INT_BITS` bits;
* everything rendered (captured blocks and macros included) at most :data:`MAX_OUTPUT`
  characters;
* loop iterations and calls (macros, methods) at most :data:`MAX_STEPS`;
* str, list, dict and number methods: only a small read-only list (:data:`SAFE_METHODS`);
  ``range``, ``dict``, ``namespace``, ``cycler``, ``lipsum`` are not available.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from segmint._playbook import TemplateSpec
from segmint.errors import TemplateError

__all__ = [
    "FIELDS",
    "MAX_INT_BITS",
    "MAX_OUTPUT",
    "MAX_STEPS",
    "MAX_VALUE",
    "CompiledTemplate",
    "MessageRenderer",
    "check_templates",
    "sample_context",
]

MAX_VALUE = 100_000
"""Characters in one value a template computes (a list counts its items and theirs)."""
MAX_OUTPUT = 1_000_000
"""Characters rendered for one message, all parts (captured blocks and macros count)."""
MAX_STEPS = 10_000
"""Loop iterations plus calls (macros, methods) for one message."""
MAX_INT_BITS = 256
"""Bits of an integer a template computes with ``*`` or ``**`` (about 77 digits)."""
MAX_ITEMS = 1_000
"""Groups the ``batch`` and ``slice`` filters may make."""

UNSAFE_NAMES = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "tb_frame",
        "im_func",
        "im_self",
        "format",
        "format_map",
    }
)

_STR_METHODS = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
    }
)
SAFE_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    int: frozenset({"real", "imag", "numerator", "denominator", "bit_length"}),
    float: frozenset({"real", "imag", "is_integer"}),
}
"""What a template may read or call on plain values; everything else is refused."""

# called methods refused when the template is compiled (the sandbox refuses them, and any
# other method outside SAFE_METHODS, at render time)
_REFUSED_CALLS = frozenset(
    {
        "append",
        "center",
        "clear",
        "encode",
        "expandtabs",
        "extend",
        "insert",
        "join",
        "ljust",
        "pop",
        "popitem",
        "remove",
        "replace",
        "reverse",
        "rjust",
        "setdefault",
        "sort",
        "to_bytes",
        "translate",
        "update",
        "zfill",
    }
)

FIELDS: dict[str, str] = {
    "user_id": "the user's id",
    "first_name": "first name (users.traits first_name / name), or None",
    "name": "full name (users.traits name), or None",
    "email": "the e-mail address (None when there is none)",
    "country": "country",
    "city": "city",
    "gender": "gender",
    "age": "age in years, or None",
    "favourite_category": "category with the most spend (latest feature run), or None",
    "segment": "the user's segment",
    "arm": "the user's arm of the campaign ('treatment', or the variant's name)",
    "ui": "the UI variant label of the user's arm (variants' `ui`), or None",
    "segmentation": "the segmentation's name",
    "campaign": "the campaign's name",
    "shop": "the project's name (segmint.yaml `project`)",
    "currency": "the project's currency",
    "offer": "type, value, min_order, code, label (e.g. '15% off', '满¥200减¥20')",
    "recommendations": "list of {item_id, title, category, price, price_label, reason} (may "
    "be empty); price_label is the price in the project's currency and locale ('€12.50')",
    "unsubscribe_url": "the signed one-click unsubscribe link",
}
"""Every field a template may use, with what it holds (see docs/campaigns.md)."""


# -- the limits --------------------------------------------------------------------------


class _LimitExceeded(Exception):
    """A template went past one of the limits (turned into a TemplateError by the caller)."""


class _Budget(threading.local):
    """What is left of one message's steps and output (reset for each message)."""

    steps = MAX_STEPS
    output = MAX_OUTPUT


_BUDGET = _Budget()
_SCALARS = (str, int, float, bool, type(None))


def _reset_budget() -> None:
    _BUDGET.steps = MAX_STEPS
    _BUDGET.output = MAX_OUTPUT


def _size(value: Any, limit: int = MAX_VALUE) -> int:
    """Characters ``value`` stands for once printed: a string its length, a list or dict
    its items and theirs (each reference counted). Stops counting past ``limit``."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += len(v) + 1
            if total <= limit:
                stack.extend(v)
        elif isinstance(v, dict):
            total += len(v) + 1
            if total <= limit:
                stack.extend(v.keys())
                stack.extend(v.values())
        else:
            total += 8
        if total > limit:
            return total
    return total


def _too_big(what: str, n: float) -> _LimitExceeded:
    return _LimitExceeded(
        f"{what} would make a value of about {n:,.0f} characters; a template value may have "
        f"at most {MAX_VALUE:,}"
    )


def _check_value(value: Any, what: str) -> None:
    if not isinstance(value, _SCALARS):
        n = _size(value)
        if n > MAX_VALUE:
            raise _too_big(what, n)


def _check_mul(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = abs(left).bit_length() + abs(right).bit_length()
        if bits > MAX_INT_BITS + 1:
            raise _LimitExceeded(
                f"'*' would make an integer of about {bits} bits; templates compute with "
                f"integers of at most {MAX_INT_BITS} bits"
            )
        return
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and n > 0:
            size = _size(seq, MAX_VALUE // n + 1) * n
            if size > MAX_VALUE:
                raise _too_big("'*'", size)


def _check_pow(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        bits = right * math.log2(abs(left))
        if bits > MAX_INT_BITS:
            raise _LimitExceeded(
                f"'**' would make an integer of about {bits:,.0f} bits; templates compute with "
                f"integers of at most {MAX_INT_BITS} bits"
            )


def _check_add(left: Any, right: Any) -> None:
    if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        size = _size(left) + _size(right)
        if size > MAX_VALUE:
            raise _too_big("'+'", size)


# %[(key)][flags][width][.precision][length]type
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?([a-zA-Z%])")


_PADDING: dict[str, int] = {}  # format string -> what its widths and precisions add


def _padding(fmt: str) -> int:
    """Characters the widths and precisions of ``fmt`` may add (-1: a ``*`` width)."""
    extra = _PADDING.get(fmt)
    if extra is None:
        extra = 0
        for width, precision, _kind in _PERCENT.findall(fmt):
            if width == "*" or precision == "*":
                extra = -1
                break
            extra += int(width or 0) + int(precision or 0) + 32
        if len(_PADDING) > 1024:
            _PADDING.clear()
        _PADDING[fmt] = extra
    return extra


def _check_percent(fmt: Any, args: Any, what: str = "'%'") -> None:
    """``fmt % args`` is bounded before it is built: widths and precisions count, ``*``
    widths are refused (the arguments are values, bounded already)."""
    if not isinstance(fmt, str):
        return
    extra = _padding(fmt)
    if extra < 0:
        raise _LimitExceeded(f"{what}: '*' widths are not available in templates")
    if extra > MAX_VALUE:
        raise _too_big(what, len(fmt) + extra)


_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul,
    "**": _check_pow,
    "+": _check_add,
    "%": _check_percent,
}


# -- filters: the ones that can amplify check their arguments first ---------------------


def _width(value: Any) -> int:
    return value if isinstance(value, int) else len(str(value))


def _f_center(value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
    if isinstance(width, int) and width > MAX_VALUE:
        raise _too_big("the center filter", width)


def _f_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    s = str(s)
    size = len(s) + (s.count("\n") + 1) * _width(width)
    if size > MAX_VALUE:
        raise _too_big("the indent filter", size)


def _f_wordwrap(
    s: Any,
    width: Any = 79,
    break_long_words: Any = True,
    wrapstring: Any = None,
    *_: Any,
    **kw: Any,
) -> None:
    s = str(s)
    wrapstring = kw.get("wrapstring", wrapstring)
    width = kw.get("width", width)
    lines = len(s) // max(int(width) if isinstance(width, int) else 1, 1) + s.count("\n") + 1
    size = len(s) + lines * len(str(wrapstring or "\n"))
    if size > MAX_VALUE:
        raise _too_big("the wordwrap filter", size)


def _f_replace(s: Any, old: Any = "", new: Any = "", count: Any = None, *_: Any, **__: Any) -> None:
    s, old, new = str(s), str(old), str(new)
    n = len(s) + 1 if old == "" else s.count(old)
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    size = len(s) + n * max(0, len(new) - len(old))
    if size > MAX_VALUE:
        raise _too_big("the replace filter", size)


def _f_join(value: Any, d: Any = "", *_: Any, **__: Any) -> None:
    items = list(value) if not isinstance(value, (str, list, tuple)) else value
    size = _size(items) + max(len(items) - 1, 0) * len(str(d))
    if size > MAX_VALUE:
        raise _too_big("the join filter", size)


def _f_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_percent(str(value), kwargs or args, "the format filter")


def _f_groups(value: Any, n: Any = 1, fill_with: Any = None, *_: Any, **kw: Any) -> None:
    if isinstance(n, int) and n > MAX_ITEMS:
        raise _LimitExceeded(
            f"the batch/slice filters may make at most {MAX_ITEMS:,} groups (asked {n:,})"
        )
    fill_with = kw.get("fill_with", fill_with)
    if fill_with is not None and isinstance(n, int):
        size = n * _size(fill_with)
        if size > MAX_VALUE:
            raise _too_big("the batch/slice filters' fill_with", size)


def _f_tojson(value: Any, indent: Any = None, *_: Any, **__: Any) -> None:
    if isinstance(indent, int) and indent > 16:
        raise _LimitExceeded("the tojson filter's indent may be at most 16")


def _f_urlize(value: Any, *args: Any, **kwargs: Any) -> None:
    for extra in (*args[1:], *kwargs.values()):
        if isinstance(extra, str) and len(extra) > 100:
            raise _LimitExceeded(
                "the urlize filter's target and rel may have at most 100 characters"
            )


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _f_center,
    "indent": _f_indent,
    "wordwrap": _f_wordwrap,
    "replace": _f_replace,
    "join": _f_join,
    "format": _f_format,
    "batch": _f_groups,
    "slice": _f_groups,
    "tojson": _f_tojson,
    "urlize": _f_urlize,
}
# filters that build a list (or a string) from an iterable: a lazy input (``map``,
# ``select``, ...) is counted item by item as it is read
_MATERIALIZING = frozenset(
    {"batch", "groupby", "join", "last", "list", "max", "min", "reverse", "slice", "sort", "sum"}
)


def _bounded_items(iterable: Iterable[Any], what: str) -> Iterator[Any]:
    size = 0
    for item in iterable:
        size += _size(item) + 1
        if size > MAX_VALUE:
            raise _too_big(what, size)
        yield item


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with its arguments checked before it runs (the filters that can build a
    value much bigger than their input), and a lazy input counted as it is read (the
    filters that collect one)."""
    check = _FILTER_CHECKS.get(name)
    materializes = name in _MATERIALIZING
    if check is None and not materializes:
        return func
    if name == "format":  # in many templates ('%.2f' | format(price)): the short way
        known = _PADDING

        def format_filter(value: Any, *args: Any, **kwargs: Any) -> Any:
            extra = known.get(value) if type(value) is str else None
            if extra is None or extra < 0 or extra > MAX_VALUE:
                _f_format(value, *args, **kwargs)
            return func(value, *args, **kwargs)

        return functools.update_wrapper(format_filter, func)
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # context/env
    what = f"the {name} filter"

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > skip:
            value = args[skip]
            if materializes and not hasattr(value, "__len__"):
                value = list(_bounded_items(value, what))
                args = (*args[:skip], value, *args[skip + 1 :])
            if check is not None:
                check(*args[skip:], **kwargs)
        return func(*args, **kwargs)

    return functools.update_wrapper(guarded, func)


# -- the sandbox -------------------------------------------------------------------------


_LOOP_FILTER = "segmint:loop"  # not a name a template can write


@pass_context
def _loop_filter(context: Any, iterable: Any) -> Any:
    """The iterable of every ``{% for %}`` goes through this (a context filter, so it is
    never evaluated when the template is compiled)."""
    try:
        n = len(iterable)
    except TypeError:  # a generator (map, select, ...): counted as it goes
        return _counted(iterable)
    budget = _BUDGET
    budget.steps -= n
    if budget.steps < 0:
        raise _LimitExceeded(f"more than {MAX_STEPS:,} loop iterations and calls for one message")
    return iterable


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja2's code generator with ``~``, literal lists and dicts, and the output of
    captured blocks and macros going through the limits (the output of the template
    itself is counted as it is read, see :func:`_render`)."""

    _buffered = False

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.segmint_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:  # noqa: N802
        self.write("environment.segmint_value(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:  # noqa: N802
        self.write("environment.segmint_value(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:  # noqa: N802
        if node.ctx != "load":  # a loop or set target
            super().visit_Tuple(node, frame)
            return
        self.write("environment.segmint_value(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:  # noqa: N802
        self._buffered = frame.buffer is not None
        super().visit_Output(node, frame)

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        text = super()._output_const_repr(group)
        return f"environment.segmint_text({text})" if self._buffered else text

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.buffer is None:
            super()._output_child_pre(node, frame, finalize)
            return
        if frame.eval_ctx.volatile:
            self.write(
                "(environment.segmint_escape if context.eval_ctx.autoescape "
                "else environment.segmint_str)("
            )
        elif frame.eval_ctx.autoescape:
            self.write("environment.segmint_escape(")
        else:
            self.write("environment.segmint_str(")
        if finalize.src is not None:
            self.write(finalize.src)


class _SegmintSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, also refusing well-known escape hatches on any kind of
    object, allowing only read-only methods on plain values, and bounding the work of a
    message (see the module docstring)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset(_BINOP_CHECKS)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = _loop_filter

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno
            )
        return tree

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in UNSAFE_NAMES:
            return False
        for kind, allowed in SAFE_METHODS.items():
            if isinstance(obj, kind):
                return attr in allowed and not attr.startswith("_")
        return bool(super().is_safe_attribute(obj, attr, value))

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        return self.undefined(
            f"{type(obj).__name__}.{attribute} is not available in templates (only reading "
            "fields and a few read-only methods; the filters center, replace, join, "
            "wordwrap pad and combine text)",
            name=attribute,
            obj=obj,
            exc=SecurityError,
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        # message data are plain dicts: ``offer.label`` is a key lookup (fast path; a dict
        # key is data, never a Python internal)
        if type(obj) is dict and not attribute.startswith("_") and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _BINOP_CHECKS[operator](left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _BUDGET
        budget.steps -= 1
        if budget.steps < 0:
            raise _LimitExceeded(
                f"more than {MAX_STEPS:,} loop iterations and calls for one message"
            )
        return super().call(__context, __obj, *args, **kwargs)

    # -- called by the generated code ----------------------------------------------------
    @staticmethod
    def segmint_concat(join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        size = 0
        for part in parts:
            size += len(part) if type(part) is str else _size(part)
        if size > MAX_VALUE:
            raise _too_big("'~'", size)
        return join(parts)

    @staticmethod
    def segmint_value(value: Any) -> Any:
        _check_value(value, "a list or dict")
        return value

    @staticmethod
    def segmint_text(text: str) -> str:
        _spend_output(len(text))
        return text

    @staticmethod
    def segmint_str(value: Any) -> str:
        if type(value) is not str:
            _check_value(value, "printing a value")
            value = str(value)
        _spend_output(len(value))
        return value

    @staticmethod
    def segmint_escape(value: Any) -> str:
        if not isinstance(value, _SCALARS):
            _check_value(value, "printing a value")
        text = escape(value)
        _spend_output(len(text))
        return text


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET
    for item in iterable:
        budget.steps -= 1
        if budget.steps < 0:
            raise _LimitExceeded(
                f"more than {MAX_STEPS:,} loop iterations and calls for one message"
            )
        yield item


def _spend_output(n: int) -> None:
    """Count ``n`` characters against the message's output."""
    budget = _BUDGET
    budget.output -= n
    if budget.output < 0:
        raise _LimitExceeded(
            f"the message would be longer than {MAX_OUTPUT:,} characters (blocks and macros "
            "included); rendering stopped"
        )


def _environment(autoescape: bool) -> _SegmintSandbox:
    env = _SegmintSandbox(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
    )
    env.globals.clear()  # no range(), lipsum(), dict(), cycler(), joiner(), namespace()
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


def _refuse_unsafe(tree: nodes.Template, where: str) -> None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            name: Any = node.attr
        else:
            arg = getattr(node, "arg", None)
            name = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(name, str) and (name.startswith("_") or name in UNSAFE_NAMES):
            raise TemplateError(
                f"{where}: refused: the template reaches for {name!r} (line {node.lineno}); "
                "templates may only read message fields, never Python internals"
            )
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Getattr) and call.node.attr in _REFUSED_CALLS:
            method = call.node.attr
            raise TemplateError(
                f"{where}: refused: the template calls .{method}() (line {call.lineno}); "
                "templates may not change message data or build huge strings with methods "
                "(the filters center, replace, join and wordwrap do it within limits)"
            )


def template_error(name: str, where: str, exc: BaseException) -> TemplateError:
    """The TemplateError for a template that failed to render (``where``: e.g. the user)."""
    if isinstance(exc, TemplateError):
        return exc
    head = f"template {name!r}{where}"
    if isinstance(exc, UndefinedError) and not isinstance(exc, SecurityError):
        missing = str(exc.message or exc)
        field = missing.split("'")[1] if missing.count("'") >= 2 else missing
        close = difflib.get_close_matches(field, list(FIELDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return TemplateError(f"{head}: {missing}{hint}. Fields messages have: {', '.join(FIELDS)}")
    if isinstance(exc, SecurityError):
        return TemplateError(f"{head}: refused: {exc}")
    if isinstance(exc, _LimitExceeded):
        return TemplateError(f"{head}: exceeds a template limit: {exc}")
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return TemplateError(f"{head}: fails to render: {type(exc).__name__}: {text}")


_SPLIT = "\x00\x1e\x00"  # between subject and body in the combined template


@dataclass(frozen=True)
class CompiledTemplate:
    """A template's parts, each compiled once (``subject``, ``body``, ``html`` or None),
    and subject and body joined into one template so a message is one render call."""

    name: str
    subject: Any
    body: Any
    html: Any | None
    combined: Any = None

    def render(
        self, context: Mapping[str, Any], where: str | None = None
    ) -> tuple[str, str, str | None]:
        """(subject, body, html) for one message; the subject is one line.

        Raises
        ------
        segmint.errors.TemplateError
            When the template fails on this context or exceeds a limit; ``where`` names
            the message in the error (default: its ``user_id``).
        """
        _reset_budget()
        try:
            if self.combined is not None:
                subject, _, body = _render(self.combined, context).partition(_SPLIT)
            else:
                subject = _render(self.subject, context)
                body = _render(self.body, context)
            html = _render(self.html, context) if self.html is not None else None
        except Exception as exc:
            raise self._error(context, where, exc) from None
        return " ".join(subject.split()), body, html

    def render_parts(
        self, context: Mapping[str, Any], where: str | None = None
    ) -> tuple[str, str, str | None]:
        """Like :meth:`render`, each part on its own (error lines match the part)."""
        _reset_budget()
        try:
            subject = " ".join(_render(self.subject, context).split())
            body = _render(self.body, context)
            html = _render(self.html, context) if self.html is not None else None
        except Exception as exc:
            raise self._error(context, where, exc) from None
        return subject, body, html

    def _error(self, context: Mapping[str, Any], where: str | None, exc: Exception) -> Exception:
        if where is None:
            where = f" (user {str(context.get('user_id'))[:100]})"
        return template_error(self.name, where, exc)


def _render(template: Any, context: Mapping[str, Any]) -> str:
    """The template's text, counted against the message's output as it is produced (64
    pieces at a time)."""
    produced = template.root_render_func(template.new_context(context))
    pieces: list[str] = []
    while chunk := list(islice(produced, 64)):
        _spend_output(sum(map(len, chunk)))
        pieces += chunk
    return "".join(pieces)


def compile_template(spec: TemplateSpec, name: str) -> CompiledTemplate:
    """Compile one template, refusing syntax errors and unsafe attribute access.

    Raises
    ------
    segmint.errors.TemplateError
        Naming the template, the part and the line.
    """
    parts: dict[str, Any] = {}
    for part, text, env in (
        ("subject", spec.subject, _TEXT_ENV),
        ("body", spec.body, _TEXT_ENV),
        ("html", spec.html, _HTML_ENV),
    ):
        if text is None:
            parts[part] = None
            continue
        where = f"template {name!r} ({part})"
        try:
            tree = env.parse(text)
            _refuse_unsafe(tree, where)
            parts[part] = env.from_string(text)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}, line {exc.lineno}: {exc.message}") from None
    combined = None
    if _SPLIT not in spec.subject and _SPLIT not in spec.body:
        try:
            combined = _TEXT_ENV.from_string(spec.subject + _SPLIT + spec.body)
        except TemplateSyntaxError:  # e.g. a block opened in the subject: render apart
            combined = None
    return CompiledTemplate(name, parts["subject"], parts["body"], parts["html"], combined)


def sample_context() -> dict[str, Any]:
    """A context with every field filled, for checking templates without a store."""
    return {
        "user_id": "U0001",
        "first_name": "Alex",
        "name": "Alex Example",
        "email": "alex@example.com",
        "country": "DE",
        "city": "Berlin",
        "gender": "X",
        "age": 35,
        "favourite_category": "books",
        "segment": "Champions",
        "arm": "treatment",
        "ui": None,
        "segmentation": "rfm",
        "campaign": "example",
        "shop": "segmint",
        "currency": "EUR",
        "offer": {
            "type": "discount",
            "value": 10.0,
            "min_order": None,
            "code": "WELCOME10",
            "label": "10% off",
        },
        "recommendations": [
            {
                "item_id": "SKU1",
                "title": "A book",
                "category": "books",
                "price": 12.5,
                "price_label": "€12.50",
                "reason": "bought together",
            }
        ],
        "unsubscribe_url": "http://localhost:8000/unsubscribe?token=t",
    }


def _render_checked(template: CompiledTemplate, context: Mapping[str, Any], where: str) -> None:
    template.render_parts(context, where)
    template.render(context, where)


def check_templates(
    templates: Mapping[str, CompiledTemplate],
    contexts: Iterable[tuple[str, Mapping[str, Any]]] = (),
) -> None:
    """Render every template against the full field schema, then against real contexts.

    Parameters
    ----------
    templates : mapping of str to CompiledTemplate
        The compiled templates, by name.
    contexts : iterable of (template name, context)
        Real messages to try (e.g. the first user of each segment).

    Raises
    ------
    segmint.errors.TemplateError
        For the first template using a field messages do not have, failing to render, or
        exceeding a limit.
    """
    sample = sample_context()
    for template in templates.values():
        _render_checked(template, sample, "")
    for name, context in contexts:
        _render_checked(templates[name], context, f" (user {context.get('user_id')})")


class MessageRenderer:
    """Render many messages fast: each template compiled once, contexts are plain dicts.

    Parameters
    ----------
    templates : mapping of str to TemplateSpec
        Templates by name.
    """

    def __init__(self, templates: Mapping[str, TemplateSpec]) -> None:
        self.templates = templates
        self.compiled_ = {name: compile_template(spec, name) for name, spec in templates.items()}

    def render(self, name: str, context: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """(subject, body, html) of one message (TemplateError when it fails)."""
        return self.compiled_[name].render(context)

    def render_many(
        self, names: Iterable[str], contexts: Iterable[Mapping[str, Any]]
    ) -> list[tuple[str, str, str | None]]:
        """Render a batch: ``names[i]`` with ``contexts[i]``."""
        compiled = self.compiled_
        return [compiled[n].render(c) for n, c in zip(names, contexts, strict=True)]
