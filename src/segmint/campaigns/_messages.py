"""From audience rows to rendered messages: contexts from the store, templates compiled once.

Contexts are plain dicts built from one query per batch (users, the feature run's
favourite category, the segment) and one for the batch's recommendations (the latest
stored batch run of :mod:`segmint.recommend`, or ``recs`` given by the caller).

Personal values are read sealed (the e-mail, the ``first_name`` and ``name`` traits) and
opened in Python here, a column of a batch at a time: the only place a message's values
are clear is the message itself. The builder counts what it opened;
:meth:`MessageBuilder.audit` appends one ``personal.read`` entry for them (a send writes
one per batch, a preview one per call), never one per message.
"""

from __future__ import annotations

import functools
import gc
import getpass
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint._i18n import language
from segmint._playbook import (
    ANY_SEGMENT,
    DEFAULT_CONTROL,
    CampaignSpec,
    Offer,
    Strategy,
    TemplateSpec,
    normalize_arm,
)
from segmint.campaigns._arms import design_from_params
from segmint.campaigns._channels import Message, channel_domain, message_id_for
from segmint.campaigns._keys import KeyRing, key_ring
from segmint.campaigns._templates import MessageRenderer, check_templates
from segmint.campaigns._unsubscribe import make_token
from segmint.errors import ConfigError
from segmint.store import (
    Store,
    Vault,
    append_audit,
    column_exists,
    completed,
    latest_run_sql,
    lit,
    open_vault,
    table_exists,
)

if TYPE_CHECKING:
    from segmint.config import Config

log = logging.getLogger(__name__)

__all__ = ["MessageBuilder", "PreparedMessage", "default_actor"]

PERSONAL_FIELDS = {
    "email": "users.email",
    "first_name": "users.traits.first_name",
    "name": "users.traits.name",
}
"""Context field -> the sealed field it is opened from."""


def default_actor() -> str:
    """Who a command-line call acts as in the audit log: the operating-system user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "cli"


Recs = Mapping[str, Sequence[Mapping[str, Any]]]


class PreparedMessage:
    """A rendered message and the channel it goes to."""

    __slots__ = ("channel", "message", "segment")

    def __init__(self, channel: str, segment: str, message: Message) -> None:
        self.channel = channel
        self.segment = segment
        self.message = message


def _template_key(segmentation: str, segment: str, strategy: Strategy) -> str:
    if isinstance(strategy.template, str):
        return strategy.template
    return f"{segmentation}/{segment} (inline)"


def _col(series: pd.Series) -> list[Any]:
    """A column as Python values, missing values as None (fast for Arrow strings)."""
    missing = series.isna()
    if not missing.any():
        return series.tolist()
    return series.astype(object).where(~missing, None).tolist()


def _none(v: Any) -> Any:
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    return v


class MessageBuilder:
    """Builds the messages of one campaign plan.

    Parameters
    ----------
    store : segmint.store.Store
        The store.
    config : segmint.Config
        The project configuration (its ``playbook``).
    campaign : str
        The campaign's name.
    run_id : str
        The plan (campaign run) whose audience is rendered.
    segment_run_id : str
        The segmentation run of the plan (its feature run gives favourite categories).
    recs : mapping, optional
        user_id -> list of {item_id, title, category, price, reason}; replaces the stored
        recommendations.
    control : str, optional
        The control arm's label; by default the one the plan recorded (its run's params),
        else the campaign's. Every other arm gets messages; a variant's template, offer
        and subject replace its strategy's.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        campaign: str,
        run_id: str,
        segment_run_id: str,
        *,
        recs: Recs | None = None,
        control: str | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.campaign = campaign
        self.spec: CampaignSpec = config.playbook.campaigns[campaign]
        self.run_id = run_id
        self.segment_run_id = segment_run_id
        self.recs = recs
        playbook = config.playbook
        templates: dict[str, TemplateSpec] = dict(playbook.templates)
        for segment, strategy in playbook.strategies.get(self.spec.segmentation, {}).items():
            if not isinstance(strategy.template, str):
                templates[_template_key(self.spec.segmentation, segment, strategy)] = (
                    strategy.template
                )
        self.control = control if control is not None else self._run_control()
        self._variant_templates: dict[tuple[str, str], str] = {}
        bases = sorted(
            {_template_key(self.spec.segmentation, seg, st) for seg, st in self._strategies()}
        )
        for v in self.spec.variants or []:
            arm = normalize_arm(v.name)
            own = v.template
            if isinstance(own, TemplateSpec):
                templates[f"variant {arm} (inline)"] = own
                own = f"variant {arm} (inline)"
            if v.subject is None:
                continue
            for base in [own] if own is not None else bases:
                key = f"{base} [variant {arm}: subject]"
                base_spec = templates[base]
                templates[key] = TemplateSpec(
                    subject=v.subject, body=base_spec.body, html=base_spec.html
                )
                self._variant_templates[(base, arm)] = key
        self.renderer = MessageRenderer(templates)
        self._keys_by_segment: dict[str, str] | None = None
        self._keys: KeyRing | None = None
        self._feature_run: str | None | bool = False
        self._rec_run: str | None | bool = False
        self._popular: list[dict[str, Any]] | None = None
        self._vault: Vault | None = None
        self.actor: str | None = None  # who the audit entries name (the OS user if None)
        self.n_opened = 0  # personal values opened since the last :meth:`audit`
        self._opened_fields: set[str] = set()
        lang, currency = language(config.locale), config.currency
        # prices repeat (a catalogue): format each once, in the project's locale and currency
        self._price_label = functools.lru_cache(maxsize=65_536)(
            lambda p: None if p is None else lang.money(p, currency, whole=False)
        )

    # -- what each segment and arm gets -------------------------------------------------
    def _strategies(self) -> list[tuple[str, Strategy]]:
        return list(self.config.playbook.strategies.get(self.spec.segmentation, {}).items())

    def _run_control(self) -> str:
        """The control label the plan recorded (the campaign's until the plan is stored)."""
        params = None
        if table_exists(self.store, "campaign_runs"):
            params = self.store.scalar(
                f"SELECT params FROM campaign_runs WHERE run_id = {lit(self.run_id)}"
            )
        if params is None:
            return normalize_arm(self.spec.control or DEFAULT_CONTROL)
        return design_from_params(params).control

    @property
    def treated(self) -> str:
        """SQL condition: an audience row ``a`` (or ``b``) that gets a message."""
        return f"arm <> {lit(self.control)}"

    def strategy_keys(self) -> dict[str, str]:
        """Segment of the plan's run -> the key of its strategy (clusters matched across
        re-clusterings; see :mod:`segmint.campaigns._resolve`)."""
        if self._keys_by_segment is None:
            from segmint.campaigns._resolve import resolve_segments

            run = self.segment_run_id
            known = self.store.query(
                f"SELECT DISTINCT segment FROM segment_assignments WHERE run_id = {lit(run)}"
            )["segment"]
            self._keys_by_segment = resolve_segments(
                self.store,
                self.config.playbook,
                self.spec.segmentation,
                run,
                [str(s) for s in known],
            ).strategy_keys()
        return self._keys_by_segment

    def strategy(self, segment: str) -> Strategy:
        """The strategy of a segment (its own or the segmentation's '*')."""
        s = self.config.playbook.strategy_for(self.spec.segmentation, segment, self.strategy_keys())
        if s is None:
            raise ConfigError(
                f"playbook.strategies.{self.spec.segmentation}: no strategy for segment "
                f"{segment!r} (and no '{ANY_SEGMENT}')"
            )
        return s

    def template_name(self, segment: str, arm: str | None = None) -> str:
        """The template a segment's messages use (in ``arm``: its variant's, if any)."""
        key = self.strategy_keys().get(segment, ANY_SEGMENT)
        base = _template_key(self.spec.segmentation, key, self.strategy(segment))
        variant = self.spec.variant(arm) if arm is not None else None
        if variant is None:
            return base
        if variant.template is not None:
            base = (
                variant.template
                if isinstance(variant.template, str)
                else f"variant {normalize_arm(variant.name)} (inline)"
            )
        return self._variant_templates.get((base, normalize_arm(variant.name)), base)

    def offer(self, segment: str, arm: str | None = None) -> Offer:
        """The offer of a segment's messages (in ``arm``: its variant's, if it has one)."""
        variant = self.spec.variant(arm) if arm is not None else None
        if variant is not None and variant.offer is not None:
            return variant.offer
        return self.strategy(segment).offer

    def check_templates(self, contexts: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        """Render every template against the field schema and the given real contexts."""
        check_templates(self.renderer.compiled_, contexts)

    def first_contexts(self) -> list[tuple[str, dict[str, Any]]]:
        """(template name, context) of the first treated user of each segment and arm of
        the plan: the real messages :meth:`check_templates` tries."""
        firsts = self.rows(
            "a.idempotency_key IN (SELECT min(b.idempotency_key) FROM campaign_audiences b "
            f"WHERE b.run_id = {lit(self.run_id)} AND b.{self.treated} "
            "GROUP BY b.segment, b.arm)"
        )
        return [
            (self.template_name(ctx["segment"], ctx["arm"]), ctx) for ctx in self.contexts(firsts)
        ]

    # -- store lookups (once) ----------------------------------------------------------
    @property
    def keys(self) -> KeyRing:
        """The project's unsubscribe key ring (read once)."""
        if self._keys is None:
            self._keys = key_ring(
                self.config.root, self.store, secret_env=self.config.playbook.secret_env
            )
        return self._keys

    def _feature_run_id(self) -> str | None:
        if self._feature_run is False:
            run = self.store.scalar(
                f"SELECT feature_run_id FROM segment_runs WHERE run_id = {lit(self.segment_run_id)}"
            )
            ok = (
                run is not None
                and table_exists(self.store, "features")
                and column_exists(self.store, "features", "favourite_category")
            )
            self._feature_run = str(run) if ok else None
        return self._feature_run  # type: ignore[return-value]

    def _recommendation_run_id(self) -> str | None:
        if self._rec_run is False:
            run = None
            if table_exists(self.store, "recommendation_runs") and table_exists(
                self.store, "recommendations"
            ):
                run = self.store.scalar(latest_run_sql("recommendation", kind="batch"))
            self._rec_run = None if run is None else str(run)
        return self._rec_run  # type: ignore[return-value]

    def _with_price_label(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(rec)
        price = _none(out.get("price"))
        out.setdefault("price_label", None if price is None else self._price_label(float(price)))
        return out

    def _popular_items(self, n: int) -> list[dict[str, Any]]:
        """Items most bought in the 30 days before the newest order ('popular now')."""
        if self._popular is None:
            frame = self.store.query(
                "SELECT oi.item_id AS item_id, i.title AS title, i.category AS category, "
                "i.price AS price, count(DISTINCT o.user_id) AS n_users "
                "FROM order_items oi JOIN orders o ON o.order_id = oi.order_id "
                "LEFT JOIN items i ON i.item_id = oi.item_id "
                f"WHERE {completed('o')} AND o.ts >= "
                "(SELECT max(ts) FROM orders) - INTERVAL '30 days' "
                "GROUP BY oi.item_id, i.title, i.category, i.price "
                "ORDER BY n_users DESC, oi.item_id LIMIT 20"
            )
            self._popular = [
                {
                    "item_id": str(r.item_id),
                    "title": _none(r.title),
                    "category": _none(r.category),
                    "price": None if _none(r.price) is None else float(r.price),  # type: ignore[arg-type]
                    "price_label": self._price_label(
                        None if _none(r.price) is None else float(r.price)  # type: ignore[arg-type]
                    ),
                    "reason": "popular now",
                }
                for r in frame.itertuples(index=False)
            ]
        return self._popular[:n]

    # -- personal values ------------------------------------------------------------------
    @property
    def vault(self) -> Vault:
        """The store's vault (opened once)."""
        if self._vault is None:
            self._vault = open_vault(self.store, self.config)
        return self._vault

    def _open(self, rows: pd.DataFrame, column: str) -> list[Any]:
        """A column of sealed values, opened (clear values pass through)."""
        values = _col(rows[column])
        field = PERSONAL_FIELDS[column]
        n = sum(1 for v in values if v is not None)
        if not n:
            return values
        self.n_opened += n
        self._opened_fields.add(field)
        opened: dict[Any, Any] = {None: None}  # sealing is deterministic: open each once
        vault = self.vault
        out = []
        for v in values:
            c = opened.get(v, opened)
            if c is opened:
                c = opened[v] = vault.open(v, field)
            out.append(c)
        return out

    def audit(self, actor: str | None = None, *, why: str = "campaign send") -> int | None:
        """Append one ``personal.read`` entry for the values opened since the last call
        (campaign, count, fields; no value) and reset the count; nothing when none were
        opened. Returns the entry's sequence number."""
        if not self.n_opened:
            return None
        if self.store.read_only:  # nowhere to write: said once per call, without values
            log.warning(
                "campaign %s: %d personal values opened on a read-only store; the audit "
                "log could not record it", self.campaign, self.n_opened,
            )  # fmt: skip
            self.n_opened = 0
            self._opened_fields = set()
            return None
        seq = append_audit(
            self.store,
            actor or self.actor or default_actor(),
            "personal.read",
            f"campaign:{self.campaign}",
            why=why,
            run_id=self.run_id,
            n_values=self.n_opened,
            fields=sorted(self._opened_fields),
        )
        self.n_opened = 0
        self._opened_fields = set()
        return seq

    # -- rows -> contexts -> messages ---------------------------------------------------
    def rows(self, where: str = "TRUE", *, limit: int | None = None) -> pd.DataFrame:
        """Rows of the plan's treated arms with the user fields templates need.

        ``where`` is a SQL condition over ``a`` (campaign_audiences) and ``u`` (users).
        """
        fr = self._feature_run_id()
        fav = "f.favourite_category" if fr else "CAST(NULL AS VARCHAR)"
        join = (
            f"LEFT JOIN features f ON f.run_id = {lit(fr)} AND f.user_id = a.user_id" if fr else ""
        )
        sql = (
            "SELECT a.idempotency_key AS idempotency_key, a.user_id AS user_id, "
            "a.segment AS segment, a.channel AS channel, a.step AS step, a.arm AS arm, "
            "u.email AS email, "
            "u.country AS country, u.city AS city, u.gender AS gender, u.age AS age, "
            "CAST(u.traits AS JSON)->>'first_name' AS first_name, "
            "CAST(u.traits AS JSON)->>'name' AS name, "
            f"{fav} AS favourite_category "
            "FROM campaign_audiences a LEFT JOIN users u ON u.user_id = a.user_id "
            f"{join} WHERE a.run_id = {lit(self.run_id)} AND a.{self.treated} AND ({where}) "
            "ORDER BY a.idempotency_key" + (f" LIMIT {int(limit)}" if limit else "")
        )
        return self.store.query(sql)

    def _recommendations(self, rows: pd.DataFrame, n_max: int) -> dict[str, list[dict[str, Any]]]:
        if self.recs is not None:
            return {
                u: [self._with_price_label(x) for x in self.recs.get(u, [])][:n_max]
                for u in rows["user_id"]
            }
        run = self._recommendation_run_id()
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if run is None or rows.empty:
            return out
        # the rows' users through the audience table (rows are sorted by key): a key range
        # joins fast where an IN list of thousands of literals would not
        keys = rows["idempotency_key"]
        recs = self.store.query(
            'SELECT r.user_id AS user_id, r."rank" AS "rank", r.item_id AS item_id, '
            "i.title AS title, i.category AS category, i.price AS price, r.reason AS reason "
            "FROM campaign_audiences a JOIN recommendations r ON r.user_id = a.user_id "
            f'AND r.run_id = {lit(run)} AND r."rank" <= {int(n_max)} '
            "LEFT JOIN items i ON i.item_id = r.item_id "
            f"WHERE a.run_id = {lit(self.run_id)} AND a.{self.treated} "
            f"AND a.idempotency_key >= {lit(str(keys.min()))} "
            f"AND a.idempotency_key <= {lit(str(keys.max()))} "
            'ORDER BY r.user_id, r."rank"'
        )
        price = pd.to_numeric(recs["price"], errors="coerce").astype("float64").tolist()
        for u, item, title, cat, p, why in zip(
            _col(recs["user_id"]),
            _col(recs["item_id"]),
            _col(recs["title"]),
            _col(recs["category"]),
            price,
            _col(recs["reason"]),
            strict=True,
        ):
            out[u].append(
                {
                    "item_id": item,
                    "title": title,
                    "category": cat,
                    "price": None if p != p else p,
                    "price_label": None if p != p else self._price_label(p),
                    "reason": why,
                }
            )
        return out

    def contexts(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """One template context per row (plain dicts; see ``segmint.campaigns.FIELDS``)."""
        if rows.empty:
            return []
        playbook = self.config.playbook
        segments = rows["segment"].astype(str).unique().tolist()
        strategies = {s: self.strategy(s) for s in segments}
        lang = language(self.config.locale)
        pairs = rows[["segment", "arm"]].astype(str).drop_duplicates().itertuples(index=False)
        offers = {}
        for s, arm in pairs:
            o = self.offer(s, arm)
            offers[(s, arm)] = {
                "type": o.type,
                "value": o.value,
                "min_order": o.min_order,
                "code": o.code,
                "label": o.text(lang, self.config.currency),
            }
        uis = {normalize_arm(v.name): v.ui for v in self.spec.variants or []}
        n_recs = {
            s: (st.n_recommendations if st.include_recommendations else 0)
            for s, st in strategies.items()
        }
        n_max = max(n_recs.values())
        recs = self._recommendations(rows, n_max) if n_max else {}
        keys = self.keys
        url = playbook.unsubscribe_url
        purpose = self.spec.purpose
        base = {
            "segmentation": self.spec.segmentation,
            "campaign": self.campaign,
            "shop": self.config.project,
            "currency": self.config.currency,
        }
        ages = _col(pd.to_numeric(rows["age"], errors="coerce"))
        out = []
        for uid, seg, arm, first, name, email, country, city, gender, age, fav in zip(
            _col(rows["user_id"]),
            _col(rows["segment"]),
            _col(rows["arm"].astype(str)),
            self._open(rows, "first_name"),
            self._open(rows, "name"),
            self._open(rows, "email"),
            _col(rows["country"]),
            _col(rows["city"]),
            _col(rows["gender"]),
            ages,
            _col(rows["favourite_category"]),
            strict=True,
        ):
            n = n_recs[seg]
            user_recs = (recs.get(uid) or self._popular_items(n))[:n] if n else []
            out.append(
                {
                    **base,
                    "user_id": uid,
                    "first_name": first,
                    "name": name,
                    "email": email,
                    "country": country,
                    "city": city,
                    "gender": gender,
                    "age": None if age is None else int(age),
                    "favourite_category": fav,
                    "segment": seg,
                    "arm": arm,
                    "ui": uis.get(arm),
                    "offer": offers[(seg, arm)],
                    "recommendations": user_recs,
                    "unsubscribe_url": url.replace(
                        "{token}", make_token(keys, uid, "email", purpose)
                    ),
                }
            )
        return out

    def messages(self, rows: pd.DataFrame) -> list[PreparedMessage]:
        """Render the messages of ``rows`` (from :meth:`rows`)."""
        # millions of small dicts and strings, none cyclic: the cyclic collector only costs
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._messages(rows)
        finally:
            if enabled:
                gc.enable()

    def _messages(self, rows: pd.DataFrame) -> list[PreparedMessage]:
        contexts = self.contexts(rows)
        if not contexts:
            return []
        domains = {
            name: channel_domain(spec) for name, spec in self.config.playbook.channels.items()
        }
        names = {
            (s, arm): self.template_name(s, arm)
            for s, arm in {(c["segment"], c["arm"]) for c in contexts}
        }
        compiled = self.renderer.compiled_
        out = []
        for ctx, channel, key in zip(
            contexts, _col(rows["channel"]), _col(rows["idempotency_key"]), strict=True
        ):
            subject, body, html = compiled[names[(ctx["segment"], ctx["arm"])]].render(ctx)
            msg = Message(
                idempotency_key=key,
                campaign=self.campaign,
                user_id=ctx["user_id"],
                to=ctx["email"],
                subject=subject,
                body=body,
                html=html,
                message_id=message_id_for(key, domains.get(channel, "segmint.local")),
                unsubscribe_url=ctx["unsubscribe_url"],
                payload={
                    "segment": ctx["segment"],
                    "arm": ctx["arm"],
                    **({"ui": ctx["ui"]} if ctx["ui"] is not None else {}),
                    "offer": ctx["offer"],
                    "recommendations": ctx["recommendations"],
                },
            )
            out.append(PreparedMessage(channel, ctx["segment"], msg))
        return out
