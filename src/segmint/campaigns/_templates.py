"""Message templates: Jinja2 in a sandbox, compiled once, strict about fields.

A template is refused when it is compiled if it reaches for anything private (an
attribute or key starting with ``_``, or ``mro``, ``func_globals``, ``gi_frame`` ...);
the sandbox refuses the same at render time as a second line. ``StrictUndefined`` turns a
field messages do not have into an error, and :func:`check_templates` renders every
template against the full field schema at plan time, so a typo never reaches an inbox.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from segmint.campaigns._config import TemplateSpec
from segmint.errors import TemplateError

__all__ = ["FIELDS", "CompiledTemplate", "MessageRenderer", "check_templates", "sample_context"]

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
    "segmentation": "the segmentation's name",
    "campaign": "the campaign's name",
    "shop": "the project's name (segmint.yaml `project`)",
    "currency": "the project's currency",
    "offer": "type, value, code, label (e.g. '15% off')",
    "recommendations": "list of {item_id, title, category, price, reason} (may be empty)",
    "unsubscribe_url": "the signed one-click unsubscribe link",
}
"""Every field a template may use, with what it holds (see docs/campaigns.md)."""


class _SegmintSandbox(SandboxedEnvironment):
    """The sandbox, also refusing well-known escape hatches on any kind of object."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in UNSAFE_NAMES:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def getattr(self, obj: Any, attribute: str) -> Any:
        # message data are plain dicts: ``offer.label`` is a key lookup (fast path; a dict
        # key is data, never a Python internal)
        if type(obj) is dict and not attribute.startswith("_") and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment(autoescape: bool) -> SandboxedEnvironment:
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

    def render(self, context: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """(subject, body, html) for one message; the subject is one line."""
        if self.combined is not None:
            t = self.combined
            text = "".join(t.root_render_func(t.new_context(context)))
            subject, _, body = text.partition(_SPLIT)
        else:
            subject = self.subject.render(context)
            body = self.body.render(context)
        html = self.html.render(context) if self.html is not None else None
        return " ".join(subject.split()), body, html

    def render_parts(self, context: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """Like :meth:`render`, each part on its own (error lines match the part)."""
        subject = " ".join(self.subject.render(context).split())
        body = self.body.render(context)
        html = self.html.render(context) if self.html is not None else None
        return subject, body, html


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
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}, line {exc.lineno}: {exc.message}") from None
        _refuse_unsafe(tree, where)
        parts[part] = env.from_string(text)
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
        "segmentation": "rfm",
        "campaign": "example",
        "shop": "segmint",
        "currency": "EUR",
        "offer": {"type": "discount", "value": 10.0, "code": "WELCOME10", "label": "10% off"},
        "recommendations": [
            {
                "item_id": "SKU1",
                "title": "A book",
                "category": "books",
                "price": 12.5,
                "reason": "bought together",
            }
        ],
        "unsubscribe_url": "http://localhost:8000/unsubscribe?token=t",
    }


def _render_checked(template: CompiledTemplate, context: Mapping[str, Any], where: str) -> None:
    try:
        template.render_parts(context)
        template.render(context)
    except UndefinedError as exc:
        missing = str(exc.message or exc)
        field = missing.split("'")[1] if missing.count("'") >= 2 else missing
        close = difflib.get_close_matches(field, list(FIELDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TemplateError(
            f"template {template.name!r}{where}: {missing}{hint}. Fields messages have: "
            f"{', '.join(FIELDS)}"
        ) from None
    except SecurityError as exc:
        raise TemplateError(f"template {template.name!r}{where}: refused: {exc}") from None
    except Exception as exc:  # a filter on a wrong type, a division by zero, ...
        raise TemplateError(
            f"template {template.name!r}{where}: fails to render: {type(exc).__name__}: {exc}"
        ) from None


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
        For the first template using a field messages do not have, or failing to render.
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
        """(subject, body, html) of one message."""
        return self.compiled_[name].render(context)

    def render_many(
        self, names: Iterable[str], contexts: Iterable[Mapping[str, Any]]
    ) -> list[tuple[str, str, str | None]]:
        """Render a batch: ``names[i]`` with ``contexts[i]``."""
        compiled = self.compiled_
        return [compiled[n].render(c) for n, c in zip(names, contexts, strict=True)]
