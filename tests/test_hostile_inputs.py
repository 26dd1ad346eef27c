"""Hostile and careless inputs through the CLI: a few hundred generated cases, each a real
``segmint`` command line on a real project, in its own process.

Four families, generated from a fixed seed so a failure reproduces:

- **files**: the demo shop's exports mutated (stray bytes, CR/LF mixes, quotes, invalid
  UTF-8, truncation, huge lines, extreme values, wrong compression, special files), then
  ``segmint ingest --json``;
- **configs**: ``segmint.yaml`` mutated (typos, wrong types, deleted lines, duplicated
  blocks, alias bombs, deep nesting, bad bytes, bad delimiters and time zones), then
  ``segmint ingest`` or ``status``;
- **expressions**: hostile SQL in custom features, rule conditions, source filters and
  computed columns, then ``segmint segment`` or ``ingest``;
- **templates**: hostile message templates, then ``segmint campaign preview``;
- **commands**: the commands of issue 15 point 16 (``-o`` into a missing folder or onto a
  directory, exports before any run, a truncated store file, ...).

For every case: the exit code is one of the documented ones (0, 1, 2, 3), stderr holds no
Python traceback and no "internal error" (the CLI's last-resort line for a bug), the
process stays under the time and memory bounds, and a load that succeeded accounts for
every row (read = accepted + rejected, inserted + updated + unchanged = accepted).
The counts are printed (``pytest -s``) and written to ``hostile-summary.json`` in the
test's temporary folder, and to the file ``$SEGMINT_HOSTILE_SUMMARY`` names, if set.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import segmint

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forks and reads /proc")

SEED = 15
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3}
TIMEOUT_S = 60.0
MAX_RSS_MIB = 1500.0
N_FILES = 110
N_CONFIGS = 80
N_EXPRESSIONS = 50

TEMPLATE_OK = {
    "subject": "Hello {{ first_name or 'there' }}",
    "body": "{{ offer.label }} for {{ segment }}. Bye: {{ unsubscribe_url }}",
}


@dataclass
class Case:
    id: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # path in the case folder -> content
    config: str | bytes | None = None  # segmint.yaml (None: the base one)
    with_store: bool = False  # start from the base project's built store
    prepare: Callable[[Path], None] | None = None


# -- the base project ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200-user demo shop: its exports (events uncompressed too), its configuration
    with a playbook, and a store holding features, segments and one plan."""
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("hostile-base")
    generate_demo(root, n_users=200, seed=SEED)
    shutil.rmtree(root / "truth", ignore_errors=True)
    exports = root / "exports"
    (exports / "events.jsonl").write_bytes(
        gzip.decompress((exports / "events.jsonl.gz").read_bytes())
    )
    doc = yaml.safe_load((root / "segmint.yaml").read_text(encoding="utf-8"))
    doc["sources"]["events"]["path"] = "exports/events.jsonl"
    del doc["segmentations"]["clusters"]  # keep each case fast
    doc["playbook"] = {
        "channels": {"export": {"type": "file", "address": "user_id", "consent": "email"}},
        "templates": {"hello": TEMPLATE_OK},
        "strategies": {"vip": {"*": {"channels": ["export"], "template": "hello"}}},
        "campaigns": {"promo": {"segmentation": "vip", "holdout": 0.2}},
    }
    (root / "segmint.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with segmint.open_project(root) as p:
        p.ingest()
        p.segment()
    return root


def _base_config(base: Path) -> dict[str, Any]:
    return yaml.safe_load((base / "segmint.yaml").read_text(encoding="utf-8"))


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# -- generators -----------------------------------------------------------------------------

PALETTE: list[bytes] = [
    b"\r",
    b"\n",
    b"\r\n",
    b'"',
    b'""',
    b",",
    b";",
    b"\t",
    b"\x00",
    b"\xff\xfe",
    b"\xe9",
    b"\xc3",
    b"{",
    b"}",
    b"\\",
    b"'",
    b'=HYPERLINK("http://x","y")',
    b":x: [bold]red[/] [/]",
    b"\xef\xbb\xbf",
    b"A" * 70_000,
    b"\n" * 50,
    b'"' + b"x\r\ny" + b'"',
]

EXTREMES = [
    b"-1e308",
    b"1e400",
    b"99999999999999999999999",
    b"",
    b"NaN",
    b"-inf",
    b"2024-13-45",
    b"0000-00-00",
    b"9999-12-31 23:59:59",
    b"'; DROP TABLE users; --",
    b"null",
    b"true",
    b"\xe4\xb8\xad\xe6\x96\x87",
    b"1,5",
    b"  ",
    b"=1+1",
    b"2024-05-01T10:00:00+25:00",
]


def _mutate(data: bytes, rng: random.Random, *, jsonl: bool) -> bytes:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        lines = data.split(b"\n")
        if op == 0:  # insert bytes
            pos = rng.randrange(len(data) + 1)
            data = data[:pos] + rng.choice(PALETTE) + data[pos:]
        elif op == 1 and len(data) > 10:  # delete a span
            a = rng.randrange(len(data))
            data = data[:a] + data[a + rng.randint(1, 200) :]
        elif op == 2 and data:  # truncate
            data = data[: rng.randrange(len(data) + 1)]
        elif op == 3:  # line endings
            data = data.replace(b"\n", rng.choice([b"\r\n", b"\r", b"\n\n"]))
        elif op == 4 and len(lines) > 2:  # duplicate a line elsewhere
            lines.insert(rng.randrange(len(lines)), rng.choice(lines[1:]))
            data = b"\n".join(lines)
        elif op == 5 and len(lines) > 2:  # one field of one row becomes extreme
            i = rng.randrange(1, len(lines))
            sep = b'": ' if jsonl else b","
            parts = lines[i].split(sep)
            j = rng.randrange(len(parts))
            value = rng.choice(EXTREMES)
            parts[j] = (b'"' + value.replace(b'"', b"") + b'"') if jsonl and j else value
            lines[i] = sep.join(parts)
            data = b"\n".join(lines)
        elif op == 6:  # the header (or first object) loses or swaps a name
            first, _, rest = data.partition(b"\n")
            names = first.split(b",")
            rng.shuffle(names)
            data = b",".join(names[: max(1, len(names) - rng.randint(0, 2))]) + b"\n" + rest
        elif op == 7 and not jsonl:  # quotes around a random span
            a = rng.randrange(len(data) + 1)
            b = min(len(data), a + rng.randint(1, 80))
            data = data[:a] + b'"' + data[a:b] + rng.choice([b'"', b""]) + data[b:]
        else:  # random bytes
            pos = rng.randrange(len(data) + 1)
            data = (
                data[:pos]
                + bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
                + data[pos:]
            )
    return data


def file_cases(base: Path) -> list[Case]:
    rng = random.Random(SEED)
    targets = {
        "customers": "exports/customers.csv",
        "consents": "exports/consents.csv",
        "products": "exports/products.csv",
        "events": "exports/events.jsonl",
    }
    originals = {k: (base / v).read_bytes()[:60_000] for k, v in targets.items()}
    cases = []
    for i in range(N_FILES):
        source = rng.choice(sorted(targets))
        data = _mutate(originals[source], rng, jsonl=source == "events")
        cases.append(Case(f"file-{i:03d}-{source}", ["ingest", "--json"], {targets[source]: data}))
    doc = _base_config(base)

    def with_path(source: str, path: str, **extra: Any) -> str:
        d = json.loads(json.dumps(doc))
        d["sources"][source]["path"] = path
        d["sources"][source].update(extra)
        return _dump(d)

    fixed = [
        ("directory", with_path("customers", "exports"), {}),
        ("dev-zero", with_path("customers", "/dev/zero"), {}),
        ("dev-null", with_path("products", "/dev/null"), {}),
        ("missing", with_path("customers", "exports/nope.csv"), {}),
        (
            "gz-not-gzip",
            with_path("customers", "exports/c.csv.gz"),
            {"exports/c.csv.gz": originals["customers"]},
        ),
        (
            "gz-jsonl-not-gzip",
            with_path("events", "exports/e.jsonl.gz"),
            {"exports/e.jsonl.gz": b'{"a": 1}\n'},
        ),
        (
            "zst-not-zstd",
            with_path("customers", "exports/c.csv.zst"),
            {"exports/c.csv.zst": originals["customers"]},
        ),
        ("parquet-is-csv", with_path("orders", "exports/customers.csv"), {}),
        ("csv-is-parquet", with_path("customers", "exports/orders.parquet"), {}),
        (
            "crlf-in-quoted-field",
            None,
            {
                "exports/customers.csv": originals["customers"]
                .replace(b"\n", b"\n", 3)
                .replace(b",paid_search\n", b',"paid\r\nsearch"\n', 1)
            },
        ),
        (
            "huge-json-line",
            None,
            {
                "exports/events.jsonl": originals["events"].split(b"\n", 1)[0][:-1]
                + b', "pad": "'
                + b"x" * 3_000_000
                + b'"}\n'
                + originals["events"]
            },
        ),
        (
            "bare-cr-unquoted",
            None,
            {
                "exports/customers.csv": originals["customers"].replace(
                    b",paid_search\n", b",paid\rsearch\n", 2
                )
            },
        ),
        (
            "only-header",
            None,
            {"exports/customers.csv": originals["customers"].split(b"\n", 1)[0] + b"\n"},
        ),
        ("empty-file", None, {"exports/consents.csv": b""}),
        (
            "binary-garbage",
            None,
            {"exports/customers.csv": bytes(random.Random(1).randrange(256) for _ in range(5000))},
        ),
        (
            "utf16",
            None,
            {"exports/customers.csv": originals["customers"].decode("utf-8").encode("utf-16")},
        ),
    ]
    for name, config, files in fixed:
        cases.append(Case(f"file-{name}", ["ingest", "--json"], files, config))
    return cases


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + "x"
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


HOSTILE_VALUES: list[Any] = [
    -1,
    0,
    1e309,
    "",
    [],
    {},
    [1, 2],
    {"a": {"b": "c"}},
    "x" * 5000,
    "../../../../etc/passwd",
    "${HOME}",
    True,
    None,
    "2024-02-30",
    "Mars/Phobos",
    "\u202e\u0000evil",
    "*",
    ";;",
    "postgresql://nobody@127.0.0.1:1/none",
]


def _walk(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _walk(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _walk(v, (*path, i))
    return out


def config_cases(base: Path) -> list[Case]:
    rng = random.Random(SEED + 1)
    doc = _base_config(base)
    text = (base / "segmint.yaml").read_text(encoding="utf-8")
    paths = [p for p in _walk(doc) if p[0] != "playbook"] + [
        p for p in _walk(doc) if p[0] == "playbook"
    ][:20]
    cases = []
    for i in range(N_CONFIGS):
        op = rng.randrange(6)
        if op in (0, 1, 2):
            d = json.loads(json.dumps(doc))
            path = rng.choice(paths)
            parent = d
            for key in path[:-1]:
                parent = parent[key]
            last = path[-1]
            if op == 0 and isinstance(last, str):  # a typo in a key
                parent[_typo(last, rng)] = parent.pop(last)
            elif op == 1 and isinstance(last, str):  # the key goes
                parent.pop(last)
            else:  # a hostile value
                parent[last] = rng.choice(HOSTILE_VALUES)
            config: str | bytes = _dump(d)
        elif op == 3:  # a line deleted or duplicated
            lines = text.splitlines(keepends=True)
            j = rng.randrange(len(lines))
            if rng.random() < 0.5:
                del lines[j]
            else:
                lines.insert(j, lines[j])
            config = "".join(lines)
        elif op == 4:  # bytes
            raw = text.encode()
            pos = rng.randrange(len(raw))
            config = (
                raw[:pos]
                + rng.choice([b"\xe9", b"\xff", b"\t", b"\x00", b"&a", b"*b", b"[", b"{", b": :"])
                + raw[pos:]
            )
        else:  # indentation broken
            lines = text.splitlines(keepends=True)
            j = rng.randrange(len(lines))
            lines[j] = rng.choice(["  ", "\t", " "]) + lines[j]
            config = "".join(lines)
        argv = rng.choice([["ingest", "--json"], ["status", "--json"]])
        cases.append(Case(f"config-{i:03d}", argv, config=config))
    bomb = "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['x'] * 9)}]\n"
        for i in range(10)
    )
    fixed: list[tuple[str, str | bytes]] = [
        ("alias-bomb", text + "x_" + bomb.replace("\nl", "\nx_l")),
        (
            "alias-bomb-in-sources",
            text.replace("sources:\n", "sources:\n  " + bomb.replace("\n", "\n  ") + "\n", 1),
        ),
        ("recursive-alias", "project: &a [*a]\n"),
        ("deep-flow", "project: " + "[" * 3000 + "]" * 3000 + "\n"),
        ("invalid-utf8", text.encode().replace(b"demo-shop", b"d\xe9mo", 1)),
        ("utf16", text.encode("utf-16")),
        ("delimiter-double", text.replace("type: csv\n", "type: csv\n    delimiter: ';;'\n", 1)),
        ("delimiter-empty", text.replace("type: csv\n", "type: csv\n    delimiter: ''\n", 1)),
        ("timezone-mars", text.replace("Europe/Berlin", "Mars/Phobos")),
        ("duplicate-source", text + "sources:\n  x: {type: csv, path: a.csv, table: users}\n"),
        ("column-typo", text.replace("email: email_address", "emial: email_address")),
        ("store-is-dir", text.replace("store: demo.duckdb", "store: exports")),
        (
            "store-unreachable-pg",
            text.replace("store: demo.duckdb", "store: postgresql://nobody@127.0.0.1:1/none"),
        ),
        ("store-env-missing", text.replace("store: demo.duckdb", "store: $SEGMINT_NO_SUCH_VAR")),
        ("empty", ""),
        ("a-list", "- 1\n- 2\n"),
        ("binary", bytes(range(256)) * 4),
    ]
    for i, query in enumerate(
        [
            "SELECT * FROM users",
            "SELECT 1 AS customer_id) AS x; DROP TABLE users; SELECT (1",
            "SELECT getenv('HOME') AS customer_id",
            "SELECT * FROM query('SELECT email AS customer_id FROM users')",
            "SELECT * FROM read_csv('/dev/zero')",
            "SELECT * FROM read_csv('{here}/exports/customers.csv', all_varchar = true)",
        ]
    ):
        d = json.loads(json.dumps(doc))
        d["sources"]["customers"] = {
            "type": "query",
            "query": query,
            "table": "users",
            "columns": {"user_id": "customer_id"},
        }
        fixed.append((f"query-source-{i}", _dump(d)))
    # CSV options of real exports (issue 16), drawn at random, right or wrong for the file
    # (a UTF-8 file read as utf-16 or shift_jis, a decimal comma in a comma-separated file)
    opts = random.Random(SEED + 16)
    choices: dict[str, list[Any]] = {
        "encoding": ["latin-1", "cp1252", "gb18030", "utf-16", "utf-32", "shift_jis", "ascii",
                     "UTF-8", "latn-1", "rot13", "idna", ""],
        "decimal": [".", ",", ";", ""],
        "thousands": [None, ".", ",", " ", "'", "5", "ab"],
        "header": [True, False],
        "formats": [{}, {"created_at": "dd.mm.yyyy"}, {"created_at": "%Y-%m-%d %H:%M:%S"},
                    {"created_at": "yyyy-mm-dd hh:mm:ss", "birthday": "dd/mm/yyyy"},
                    {"created_at": "mmm"}, {"created_at": "%Q"}, {"age": "%Y"}],
    }  # fmt: skip
    for enc in ("utf-16", "utf-32"):  # a UTF-8 file without the BOM these need
        d = json.loads(json.dumps(doc))
        d["sources"]["customers"]["encoding"] = enc
        fixed.append((f"csv-{enc}-no-bom", _dump(d)))
    for i in range(16):
        d = json.loads(json.dumps(doc))
        for key, values in choices.items():
            if opts.random() < 0.5:
                value = opts.choice(values)
                if value is not None:
                    d["sources"]["customers"][key] = value
        fixed.append((f"csv-options-{i:02d}", _dump(d)))
    for name, config in fixed:
        cases.append(Case(f"config-{name}", ["ingest", "--json"], config=config))
    return cases


EXPRESSIONS = [
    "(SELECT 1)",
    "1) AS a FROM _raw; DROP TABLE users; SELECT (1",
    "(SELECT string_agg(email, ',') FROM users)",
    "sum(amount) OVER ()",
    "read_csv('/etc/passwd')",
    "getenv('HOME')",
    "current_setting('threads')",
    "CAST(status AS INT)",
    "max(CAST(status AS INT))",
    "date_diff('secret', ts, ts)",
    "max(date_diff('secret', ts, ts))",
    "max(CAST(traits AS VARCHAR))",
    "max(email)",
    "max(lower(phone))",
    "(" * 300 + "1" + ")" * 300,
    "sum(" * 200 + "amount" + ")" * 200,
    "amount / 0",
    "sum(amount) / 0",
    "1e308 * 1e308",
    "max(repeat('a', 1000000000))",
    "sum(amount) FILTER (WHERE (SELECT 1))",
    "/* comment */ count(*)",
    "count(*) -- comment",
    "count(*); count(*)",
    "'unterminated",
    "𝓊𝓃𝒾𝒸ℴ𝒹ℯ > 1",
    "x" * 3000,
    "count(*) + count(*)",
    "monetary > 3000 AND recency_days <= 60",
    "CAST(monetary AS INT) > 10",
    "CAST(2147483648000 AS INT) > 1",
    "nosuchcolumn > 1",
    "monetary > 'abc'",
    "monetary >",
    "",
    "[1, 2, 3]",
    "{'a': 1}",
    "regexp_matches(email, '(a+)+$')",
    "sum(amount) FILTER (WHERE status = 'completed') / count(*)",
    "extract(epoch FROM ts)",
]


def expression_cases(base: Path) -> list[Case]:
    rng = random.Random(SEED + 2)
    doc = _base_config(base)
    cases = []
    places = ["feature", "rule", "filter", "column"]
    for i in range(N_EXPRESSIONS):
        expr = EXPRESSIONS[i % len(EXPRESSIONS)]
        if i >= len(EXPRESSIONS):  # compose two at random
            expr = f"({rng.choice(EXPRESSIONS)}) {rng.choice(['+', 'AND', '||', '/'])} ({rng.choice(EXPRESSIONS)})"
        place = places[i % len(places)] if i < len(EXPRESSIONS) else rng.choice(places)
        d = json.loads(json.dumps(doc))
        if place == "feature":
            d["features"]["custom"]["hostile"] = {"table": "orders", "expr": expr}
            argv = ["segment", "vip"]
        elif place == "rule":
            d["segmentations"]["vip"]["rules"][0]["when"] = expr
            argv = ["segment", "vip"]
        elif place == "filter":
            d["sources"]["customers"]["filter"] = expr
            argv = ["ingest", "--json", "--force"]
        else:
            d["sources"]["customers"]["columns"]["city"] = {"expr": expr}
            argv = ["ingest", "--json", "--force"]
        cases.append(Case(f"expr-{i:03d}-{place}", argv, config=_dump(d), with_store=True))
    return cases


TEMPLATES = [
    "{{ 'a' * 3000000000 }}",
    "{{ 2 ** 100000 }}",
    "{{ 10 ** 10 ** 10 }}",
    "{{ offer.update({'x': 1}) }}",
    "{{ recommendations.append(1) }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ 'a'.ljust(1000000000) }}",
    "{{ 'a'.center(1000000000) }}",
    "{{ 'a'.zfill(1000000000) }}",
    "{{ ('a' * 1000).replace('a', 'a' * 1000000) }}",
    "{{ '%999999999s' % 1 }}",
    "{{ first_name | center(1000000000) }}",
    "{{ first_name | indent(1000000000) }}",
    "{{ 'x' | wordwrap(1000000000) }}",
    "{{ '%s' | format('a' * 100) }}",
    "{{ [1] * 1000000000 }}",
    "{{ recommendations * 100000000 }}",
    "{{ (first_name ~ 'x') * 100000000 }}",
    "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{{ 1 / 0 }}",
    "{{ nosuchfield }}",
    "{{ lipsum(100000) }}",
    "{{ range(10 ** 10) | list }}",
    "{{ self }}",
    "{{ cycler }}",
    "{{",
    "{% for %}",
    "{% raw %}",
    "{{ offer['__class__'] }}",
    "{{ 'abc' | attr('__class__') }}",
    "{{ 9999999999999999999999999 * 9999999999999999999999999 * 99999999999999999999 }}",
    "{{ (2 ** 62) * (2 ** 62) * (2 ** 62) * (2 ** 62) * (2 ** 62) }}",
    "{{ '{0:>999999999}'.format(1) }}",
    "{{ first_name | truncate(1000000000) }}",
    "{{ unsubscribe_url | urlize }}",
    "{% set x = offer %}{{ x.pop('label') }}",
    ":x: [bold]{{ segment }}[/] [/]",
]


def template_cases(base: Path) -> list[Case]:
    doc = _base_config(base)
    cases = []
    for i, body in enumerate(TEMPLATES):
        d = json.loads(json.dumps(doc))
        part = "body" if i % 3 else "subject"
        d["playbook"]["templates"]["hello"] = {**TEMPLATE_OK, part: body}
        cases.append(
            Case(
                f"template-{i:03d}-{part}",
                ["campaign", "preview", "promo", "-n", "2"],
                config=_dump(d),
                with_store=True,
            )
        )
    return cases


def _truncate_store(folder: Path) -> None:
    store = folder / "demo.duckdb"
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 3])


def _garbage_store(folder: Path) -> None:
    (folder / "demo.duckdb").write_bytes(b"this is not a database\n" * 100)


def _fresh_store(folder: Path) -> None:
    (folder / "demo.duckdb").unlink()


def _store_is_dir(folder: Path) -> None:
    (folder / "demo.duckdb").unlink()
    (folder / "demo.duckdb").mkdir()


def command_cases(base: Path) -> list[Case]:
    mk = os.path.join
    cases = [
        Case(
            "cmd-export-missing-folder",
            ["export", "profiles", "-o", mk("no", "such", "dir", "p.csv")],
            with_store=True,
        ),
        Case("cmd-export-onto-dir", ["export", "profiles", "-o", "exports"], with_store=True),
        Case(
            "cmd-export-xlsx-onto-dir",
            ["export", "profiles", "-o", "exports", "--format", "xlsx"],
            with_store=True,
        ),
        Case(
            "cmd-export-personas-onto-dir",
            ["export", "personas", "vip", "-o", "exports"],
            with_store=True,
        ),
        Case("cmd-report-onto-dir", ["report", "-o", "exports"], with_store=True),
        Case(
            "cmd-report-missing-folder",
            ["report", "-o", mk("no", "such", "r.html")],
            with_store=True,
        ),
        Case(
            "cmd-export-before-any-run",
            ["export", "profiles", "-o", "p.csv"],
            with_store=True,
            prepare=_fresh_store,
        ),
        Case(
            "cmd-persona-before-any-run", ["persona", "vip"], with_store=True, prepare=_fresh_store
        ),
        Case(
            "cmd-export-personas-before-any-run",
            ["export", "personas", "vip", "-o", "p.xlsx"],
            with_store=True,
            prepare=_fresh_store,
        ),
        Case("cmd-status-truncated-store", ["status"], with_store=True, prepare=_truncate_store),
        Case("cmd-ingest-truncated-store", ["ingest"], with_store=True, prepare=_truncate_store),
        Case("cmd-status-garbage-store", ["status"], with_store=True, prepare=_garbage_store),
        Case("cmd-status-store-is-dir", ["status"], with_store=True, prepare=_store_is_dir),
        Case("cmd-profile-unknown-user", ["profile", "[bold]nobody:x:"], with_store=True),
        Case("cmd-persona-unknown-segmentation", ["persona", "nosuch"], with_store=True),
        Case("cmd-segment-unknown", ["segment", "nosuch"], with_store=True),
        Case("cmd-ingest-unknown-source", ["ingest", "-s", "nosuch"], with_store=True),
        Case("cmd-project-missing", ["status", "-p", "no/such/project"]),
        Case("cmd-project-is-file", ["status", "-p", "segmint.yaml"]),
        Case("cmd-init-onto-file", ["init", "segmint.yaml/sub"]),
        Case("cmd-campaign-unknown", ["campaign", "preview", "nosuch"], with_store=True),
        Case("cmd-unsubscribe-forged", ["campaign", "unsubscribe", "Zm9v.YmFy"], with_store=True),
        Case("cmd-unsubscribe-garbage", ["campaign", "unsubscribe", "%%%"], with_store=True),
        Case("cmd-quarantine-markup", ["status"], with_store=True),
        Case("cmd-quarantine-rows", ["quarantine", "-n", "50"], with_store=True),
        Case("cmd-quarantine-json", ["quarantine", "users", "--json"], with_store=True),
        Case("cmd-quarantine-unknown-table", ["quarantine", "nosuch"], with_store=True),
        Case("cmd-quarantine-negative-n", ["quarantine", "-n", "-1"], with_store=True),
        Case("cmd-export-unknown-ext", ["export", "profiles", "-o", "p.xls"], with_store=True),
        Case(
            "cmd-export-ext-vs-format",
            ["export", "profiles", "-o", "p.xlsx", "-f", "csv"],
            with_store=True,
        ),
        Case("cmd-export-segment-ext", ["export", "segment", "vip", "-o", "x.*"], with_store=True),
        Case(
            "cmd-export-segment-purpose-blank",
            ["export", "segment", "vip", "-o", "x.csv", "--purpose", " "],
            with_store=True,
        ),
        Case(
            "cmd-export-audience-unknown",
            ["export", "audience", "[bold]nosuch", "-o", "a.csv"],
            with_store=True,
        ),
        Case("cmd-segments-show-prefix", ["segments", "show", "s-"], with_store=True),
        Case("cmd-export-log", ["export", "log", "-n", "-1"], with_store=True),
    ]
    return cases


# -- running --------------------------------------------------------------------------------


def _materialise(case: Case, base: Path, root: Path) -> dict[str, Any]:
    folder = root / case.id
    folder.mkdir()
    (folder / "exports").mkdir()
    for f in (base / "exports").iterdir():
        (folder / "exports" / f.name).symlink_to(f)
    if case.with_store:
        shutil.copy2(base / "demo.duckdb", folder / "demo.duckdb")
    config = case.config if case.config is not None else (base / "segmint.yaml").read_bytes()
    (folder / "segmint.yaml").write_bytes(config.encode() if isinstance(config, str) else config)
    for rel, data in case.files.items():
        target = folder / rel
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)
    if case.prepare is not None:
        case.prepare(folder)
    argv = [*case.argv]
    if "-p" not in argv and argv[0] != "init":
        argv += ["-p", "."]
    return {
        "id": case.id,
        "dir": str(folder),
        "argv": argv,
        "timeout_s": TIMEOUT_S,
        "max_rss_mib": MAX_RSS_MIB,
        "has_data": _sources_with_data(folder) if case.config is None else [],
    }


def _sources_with_data(folder: Path) -> list[str]:
    """Text sources of the base configuration whose file holds at least one line with
    content beyond the header: a successful load of such a file must read a row."""
    import re

    doc = yaml.safe_load((folder / "segmint.yaml").read_text(encoding="utf-8"))
    out = []
    for name, source in doc["sources"].items():
        if source["type"] not in ("csv", "jsonl"):
            continue
        data = (folder / source["path"]).read_bytes()
        lines = [ln for ln in re.split(rb"\r\n|\r|\n", data) if ln.strip()]
        if len(lines) > (1 if source["type"] == "csv" else 0):
            out.append(name)
    return out


def _problems(case: dict[str, Any], result: dict[str, Any]) -> list[str]:
    out = []
    if result["killed"]:
        out.append(f"killed: {result['killed']}")
    if result["signal"] is not None:
        out.append(f"died of signal {result['signal']}")
    if result["exit"] is not None and result["exit"] not in DOCUMENTED_EXIT_CODES:
        out.append(f"exit code {result['exit']}")
    err = result["stderr"]
    if "Traceback (most recent call last)" in err:
        out.append("a traceback on stderr")
    if "internal error" in err:
        out.append("an internal error (a bug) on stderr")
    if result["exit"] == 0 and "ingest" in case["argv"] and "--json" in case["argv"]:
        try:
            loads = json.loads(result["stdout"])
        except json.JSONDecodeError:
            out.append("ingest --json printed no JSON")
        else:
            # the retries of held rows a load set off are loads too
            def flat(lds: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [x for ld in lds for x in [ld, *flat(ld.get("retries", []))]]

            for ld in flat(loads):
                if not ld["skipped"] and ld["source"] in case["has_data"] and not ld["rows_read"]:
                    out.append(f"{ld['source']}: 0 rows read from a file holding data")
                if ld["rows_read"] != ld["rows_accepted"] + ld["rows_rejected"]:
                    out.append(f"{ld['source']}: read != accepted + rejected")
                written = ld["rows_inserted"] + ld["rows_updated"] + ld["rows_unchanged"]
                if not ld["skipped"] and written != ld["rows_accepted"]:
                    out.append(f"{ld['source']}: inserted + updated + unchanged != accepted")
    return out


def test_hostile_inputs_end_in_a_documented_exit_code_and_no_traceback(
    base: Path, tmp_path: Path
) -> None:
    cases = (
        file_cases(base)
        + config_cases(base)
        + expression_cases(base)
        + template_cases(base)
        + command_cases(base)
    )
    specs = [_materialise(c, base, tmp_path) for c in cases]
    (tmp_path / "cases.json").write_text(json.dumps(specs), encoding="utf-8")
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    env.pop("SEGMINT_DEBUG", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests._cli_runner",
            str(tmp_path / "cases.json"),
            str(tmp_path / "results.json"),
        ],
        check=True,
        env=env,
        timeout=1800,
    )
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    failures = {}
    for spec, result in zip(specs, results, strict=True):
        problems = _problems(spec, result)
        if problems:
            failures[spec["id"]] = {"problems": problems, "stderr": result["stderr"][-600:]}
    families = Counter(r["id"].split("-")[0] for r in results)
    summary = {
        "inputs": len(results),
        "by_family": dict(families),
        "exit_codes": dict(Counter(str(r["exit"]) for r in results)),
        "tracebacks": sum("Traceback (most recent" in r["stderr"] for r in results),
        "internal_errors": sum("internal error" in r["stderr"] for r in results),
        "killed": sum(bool(r["killed"]) for r in results),
        "max_seconds": max(r["seconds"] for r in results),
        "max_peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "failures": len(failures),
    }
    report = json.dumps({"summary": summary, "failures": failures, "results": results}, indent=1)
    (tmp_path / "hostile-summary.json").write_text(report, encoding="utf-8")
    if os.environ.get("SEGMINT_HOSTILE_SUMMARY"):  # keep it where a person can read it
        Path(os.environ["SEGMINT_HOSTILE_SUMMARY"]).write_text(report, encoding="utf-8")
    print("\nhostile inputs:", json.dumps(summary))
    assert not failures, json.dumps(failures, indent=1)[:20_000]
