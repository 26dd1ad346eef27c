"""Templates: sandboxed, strict about fields, checked at plan time."""

from __future__ import annotations

import pytest

from segmint.campaigns import FIELDS, MessageRenderer, TemplateSpec, plan_campaign
from segmint.campaigns._templates import check_templates, sample_context
from segmint.errors import TemplateError
from segmint.store import Store

from .conftest import TINY_PLAYBOOK, tiny_config


@pytest.mark.parametrize(
    "body",
    [
        "{{ offer.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ recommendations.__class__.mro() }}",
        "{{ offer['__class__'] }}",
        "{{ user_id.format.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ offer.mro }}",
    ],
)
def test_templates_reaching_for_internals_are_refused(body: str) -> None:
    with pytest.raises(TemplateError, match="refused|unknown field|undefined"):
        renderer = MessageRenderer({"t": TemplateSpec(subject="s", body=body)})
        check_templates(renderer.compiled_)


def test_refusal_names_the_attribute_and_line() -> None:
    with pytest.raises(
        TemplateError, match=r"template 't' \(body\): refused.*'__class__' \(line 2\)"
    ):
        MessageRenderer({"t": TemplateSpec(subject="s", body="ok\n{{ offer.__class__ }}")})


def test_sandbox_refuses_at_render_time_too() -> None:
    # getattr via a filter cannot be seen in the tree; the sandbox still refuses it
    renderer = MessageRenderer(
        {"t": TemplateSpec(subject="s", body="{{ offer | attr('__class__') }}")}
    )
    with pytest.raises(TemplateError, match="refused|undefined|unsafe"):
        check_templates(renderer.compiled_)


def test_unknown_field_is_an_error_with_a_suggestion() -> None:
    renderer = MessageRenderer({"t": TemplateSpec(subject="Hi {{ frist_name }}", body="b")})
    with pytest.raises(
        TemplateError, match=r"'frist_name' is undefined; did you mean 'first_name'"
    ):
        check_templates(renderer.compiled_)


def test_syntax_error_names_template_and_line() -> None:
    with pytest.raises(TemplateError, match=r"template 't' \(body\), line 2"):
        MessageRenderer({"t": TemplateSpec(subject="s", body="a\n{% if %}")})


def test_every_documented_field_renders() -> None:
    body = "\n".join(f"{{{{ {f} }}}}" for f in FIELDS)
    renderer = MessageRenderer({"t": TemplateSpec(subject="s", body=body)})
    out = renderer.render("t", sample_context())[1]
    assert "Alex" in out and "10% off" in out


def test_subject_is_one_line() -> None:
    renderer = MessageRenderer({"t": TemplateSpec(subject="a\n  b\r\nc", body="x")})
    assert renderer.render("t", sample_context())[0] == "a b c"


def test_html_part_is_autoescaped() -> None:
    renderer = MessageRenderer(
        {"t": TemplateSpec(subject="s", body="{{ name }}", html="<p>{{ name }}</p>")}
    )
    ctx = dict(sample_context(), name="<script>")
    _, body, html = renderer.render("t", ctx)
    assert body == "<script>" and html == "<p>&lt;script&gt;</p>"


def test_missing_field_fails_the_plan_not_the_send(tiny: Store) -> None:
    pb = dict(TINY_PLAYBOOK, templates={"hello": {"subject": "Hi", "body": "{{ loyalty_points }}"}})
    with pytest.raises(TemplateError, match="loyalty_points"):
        plan_campaign(tiny, tiny_config(pb), "gold_once")
    assert tiny.scalar("SELECT count(*) FROM campaign_runs") == 0  # nothing stored


def test_failure_on_a_real_user_rolls_the_plan_back(tiny: Store) -> None:
    # renders on the full sample (age 35) but not on a real user without an age
    pb = dict(TINY_PLAYBOOK, templates={"hello": {"subject": "Hi", "body": "{{ 100 // age }}"}})
    with pytest.raises(TemplateError, match=r"\(user u\d\d\): fails to render"):
        plan_campaign(tiny, tiny_config(pb), "gold_once")
    assert tiny.scalar("SELECT count(*) FROM campaign_runs") == 0
    assert tiny.scalar("SELECT count(*) FROM campaign_audiences") == 0
