"""Templates cannot exhaust the machine or change message data (issue 15, points 14 and
16): every example of the issue and every class found is a TemplateError, found while
little memory and time are used."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from pathlib import Path

import pytest

from segmint.campaigns import MessageRenderer, TemplateSpec, plan_campaign, send_campaign
from segmint.campaigns._templates import (
    MAX_OUTPUT,
    MAX_STEPS,
    check_templates,
    sample_context,
)
from segmint.errors import TemplateError
from segmint.store import Store

from .conftest import TINY_PLAYBOOK, tiny_config

VALUE = r"exceeds a template limit: .* a template value may have at most 100,000"
STEPS = rf"more than {MAX_STEPS:,} loop iterations and calls"
REFUSED_CALL = r"refused: the template calls \.{}\(\)"

CASES = [
    # the examples
    ("{{ 'a' * 3000000000 }}", r"'\*' would make a value of about 3,000,000,000 characters"),
    ("{{ 2 ** 100000 }}", r"'\*\*' would make an integer of about 100,000 bits"),
    ("{{ offer.update({'label': 'free'}) }}", REFUSED_CALL.format("update")),
    # arithmetic
    ("{{ [0] * 10 ** 9 }}", VALUE),
    ("{{ (2 ** 200) * (2 ** 200) }}", r"integers of at most 256 bits"),
    ("{% set a = 'x' * 60000 %}{{ a + a }}", VALUE),
    ("{% set a = 'x' * 90000 %}{{ a ~ a }}", r"'~' would make a value"),
    ("{{ '%999999999s' % 'x' }}", VALUE),
    ("{{ '%.999999999f' % 1.5 }}", VALUE),
    ("{{ '%*s' % (999999999, 'x') }}", r"'\*' widths are not available"),
    ("{{ 2.0 ** 100000 }}", r"fails to render: OverflowError"),
    ("{{ 1 // 0 }}", r"fails to render: ZeroDivisionError"),
    # methods that amplify or change data: refused when compiled ...
    ("{{ 'a'.ljust(10**9) }}", REFUSED_CALL.format("ljust")),
    ("{{ 'a'.rjust(10**9) }}", REFUSED_CALL.format("rjust")),
    ("{{ 'a'.center(10**9) }}", REFUSED_CALL.format("center")),
    ("{{ '1'.zfill(10**9) }}", REFUSED_CALL.format("zfill")),
    ("{{ ('a' * 9000).replace('a', 'b' * 9000) }}", REFUSED_CALL.format("replace")),
    ("{{ '\t'.expandtabs(10**9) }}", REFUSED_CALL.format("expandtabs")),
    ("{{ ','.join(recommendations) }}", REFUSED_CALL.format("join")),
    ("{{ (1).to_bytes(10**9, 'big') }}", REFUSED_CALL.format("to_bytes")),
    ("{{ recommendations.append(offer) }}", REFUSED_CALL.format("append")),
    ("{{ recommendations.pop() }}", REFUSED_CALL.format("pop")),
    ("{{ recommendations[0].update({'title': 'x'}) }}", REFUSED_CALL.format("update")),
    ("{{ offer.setdefault('code', 'FREE') }}", REFUSED_CALL.format("setdefault")),
    # ... and by the sandbox when reached another way
    ("{% set grow = 'a'.ljust %}{{ grow(10**9) }}", r"refused: str\.ljust is not available"),
    ("{{ (offer | attr('update'))({'label': 'x'}) }}", r"refused: dict\.update is not"),
    ("{% set f = offer.copy %}{{ f() }}", r"refused: dict\.copy is not available"),
    # filters with huge widths or counts
    ("{{ 'a' | center(1000000000) }}", r"the center filter would make a value"),
    ("{{ ('a\n' * 40000) | indent(100000) }}", r"the indent filter would make a value"),
    ("{{ 'a b' | wordwrap(1, wrapstring='x' * 90000) }}", r"the wordwrap filter"),
    ("{{ '%999999999s' | format('x') }}", r"the format filter would make a value"),
    ("{{ ('a' * 60000) | replace('a', 'bb') }}", r"the replace filter would make a value"),
    ("{{ 'ab' | replace('', 'x' * 60000) }}", r"the replace filter would make a value"),
    ("{% set s = 'x' * 90000 %}{{ [s, s] | join }}", r"(list or dict|join filter)"),
    ("{{ [1] | batch(1000000000, 'x') | list }}", r"at most 1,000 groups"),
    ("{{ [1] | slice(1000000000) | list }}", r"at most 1,000 groups"),
    ("{% set s = 'x' * 99000 %}{{ [1] | batch(999, s) | list }}", r"fill_with would make"),
    ("{{ offer | tojson(indent=1000000) }}", r"indent may be at most 16"),
    ("{{ ('x' * 99000) | list | map('center', 99000) | list }}", r"the list filter would make"),
    # big values assembled from small pieces
    ("{% set s = 'x' * 90000 %}{{ [s, s, s, s, s, s, s, s, s, s, s, s] }}", r"a list or dict"),
    ("{{ [[1] * 10000] * 10000 }}", VALUE),
    # loops and calls
    ("{% for a in 'x' * 1000 %}{% for b in 'x' * 1000 %}.{% endfor %}{% endfor %}", STEPS),
    (
        "{% for a in [1,2,3,4,5,6,7,8,9,10] %}{% for b in [1,2,3,4,5,6,7,8,9,10] %}"
        "{% for c in [1,2,3,4,5,6,7,8,9,10] %}{% for d in [1,2,3,4,5,6,7,8,9,10] %}"
        "{% for e in [1,2,3,4,5,6,7,8,9,10] %}.{% endfor %}{% endfor %}{% endfor %}"
        "{% endfor %}{% endfor %}",
        STEPS,
    ),
    ("{% for a in ('x' * 20000) | map('upper') %}.{% endfor %}", STEPS),
    (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
        STEPS,
    ),
    # the size of the message, captured blocks and macros included
    (
        "{% set s = 'x' * 99000 %}{% for i in 'y' * 20 %}{{ s }}{% endfor %}",
        rf"longer than {MAX_OUTPUT:,} characters",
    ),
    (
        "{% set s = 'x' * 99000 %}{% set t %}{% for i in 'y' * 20 %}{{ s }}{% endfor %}"
        "{% endset %}.",
        rf"longer than {MAX_OUTPUT:,} characters",
    ),
    (
        "{% macro m(s) %}{% for i in 'y' * 20 %}{{ s }}{% endfor %}{% endmacro %}"
        "{% set x = m('x' * 99000) %}.",
        rf"longer than {MAX_OUTPUT:,} characters",
    ),
]


@pytest.mark.parametrize(("body", "match"), CASES, ids=[c[0][:60] for c in CASES])
def test_template_limit_is_a_clear_error_in_little_memory(body: str, match: str) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(TemplateError, match=match) as info:
            renderer = MessageRenderer({"t": TemplateSpec(subject="s", body=body)})
            check_templates(renderer.compiled_)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith("template 't'")
    assert "Traceback" not in str(info.value) and len(str(info.value)) < 400
    assert peak < 30_000_000, f"peak {peak:,} bytes"
    assert time.perf_counter() - started < 10


def test_the_context_is_never_changed() -> None:
    ctx = sample_context()
    before = repr(ctx)
    for body in (
        "{% set f = offer.update %}{{ f({'label': 'free'}) }}",
        "{% set f = recommendations.append %}{{ f(1) }}",
        "{% set offer = {'label': 'x'} %}{{ offer.label }}",  # a new local name, not the field
    ):
        renderer = MessageRenderer({"t": TemplateSpec(subject="s", body=body)})
        with contextlib.suppress(TemplateError):
            renderer.render("t", ctx)
        assert repr(ctx) == before


def test_everyday_templates_still_render() -> None:
    body = (
        "{% macro item(r) %}* {{ r.title | title }} ({{ '%.2f' | format(r.price) }}){% endmacro %}"
        "{{ 'Hi' | center(10) }}|{{ (first_name or 'there') ~ '!' }}\n"
        "{% for r in recommendations %}{{ loop.index }}/{{ loop.length }} {{ item(r) }}\n"
        "{% endfor %}{% set n = recommendations | length %}{{ n * 2 + 1 }} {{ 2 ** 10 }}\n"
        "{{ offer.items() | list | length }} {{ offer.get('code') }} "
        "{{ ['a', 'b'] | join(', ') }} {{ 'x-y' | replace('-', '+') }} {{ 'ab' * 3 }}\n"
        "{{ 'one two three' | wordwrap(5) | indent(2) }} {{ [1, 2, 3] | batch(2) | list }} "
        "{{ '%s has %d' % (name, 3) }} {{ recommendations | map(attribute='title') | join }} "
        "{{ email.split('@')[1] | upper }} {{ offer | tojson }}"
        "{% filter upper %}{{ segment }}{% endfilter %}"
    )
    renderer = MessageRenderer({"t": TemplateSpec(subject="s {{ name }}", body=body)})
    check_templates(renderer.compiled_)
    _, text, _ = renderer.render("t", sample_context())
    assert "    Hi    |Alex!" in text and "1/1 * A Book (12.50)" in text
    assert "3 1024" in text and "5 WELCOME10 a, b x+y ababab" in text  # offer: 5 fields
    assert "[[1, 2], [3]]" in text and "Alex Example has 3" in text
    assert "EXAMPLE.COM" in text and '"code": "WELCOME10"' in text and "CHAMPIONS" in text


def test_a_message_of_most_of_the_limit_renders() -> None:
    body = "{% set s = 'x' * 99000 %}{% for i in 'y' * 9 %}{{ s }}{% endfor %}"
    renderer = MessageRenderer({"t": TemplateSpec(subject="s", body=body)})
    assert len(renderer.render("t", sample_context())[1]) == 891_000


def test_html_part_is_bounded_with_the_rest_of_the_message() -> None:
    spec = TemplateSpec(
        subject="s",
        body="{% set s = 'x' * 99000 %}{% for i in 'y' * 6 %}{{ s }}{% endfor %}",
        html="{% set s = 'x' * 99000 %}{% for i in 'y' * 6 %}<p>{{ s }}</p>{% endfor %}",
    )
    with pytest.raises(TemplateError, match="longer than 1,000,000 characters"):
        MessageRenderer({"t": spec}).render("t", sample_context())


def test_a_template_failing_for_a_later_user_stops_the_send_cleanly(
    tiny: Store, tmp_path: Path
) -> None:
    from .test_send import _Flaky

    # the first user of the segment has an age (the checks pass); the next one has none
    tiny.execute("UPDATE users SET age = 30 WHERE user_id = 'u01'")
    pb = dict(TINY_PLAYBOOK, templates={"hello": {"subject": "Hi", "body": "{{ 100 // age }}"}})
    config = tiny_config(pb)
    plan = plan_campaign(tiny, config, "gold_once")
    channel = _Flaky(n_fail=0)
    with pytest.raises(
        TemplateError,
        match=r"campaign 'gold_once': template 'hello' \(user u02\): fails to render: TypeError"
        r".*Nothing of this batch was sent",
    ):
        send_campaign(tiny, config, "gold_once", plan=plan, channels={"email": channel})
    assert channel.sent == []
    statuses = tiny.query("SELECT DISTINCT status FROM deliveries WHERE campaign = 'gold_once'")
    assert statuses["status"].tolist() == ["pending"]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("{{ 2 ** 100000 }}", "integers of at most 256 bits"),
        ("{{ 2.0 ** 100000 }}", "OverflowError"),
        ("{{ 'a' * 3000000000 }}", "a template value may have at most 100,000"),
    ],
)
def test_cli_plan_with_a_runaway_template_is_one_line(demo: Path, body: str, match: str) -> None:
    from typer.testing import CliRunner

    from segmint.cli import app

    from .conftest import demo_playbook, write_playbook

    pb = demo_playbook(demo)
    pb["templates"] = {name: dict(t, body=body) for name, t in pb["templates"].items()}
    write_playbook(demo, pb)
    result = CliRunner().invoke(app, ["campaign", "plan", "winback_at_risk", "-p", str(demo)])
    assert result.exit_code == 2
    assert match in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("error:") == 1
