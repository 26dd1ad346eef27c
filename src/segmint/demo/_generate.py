"""Deterministic generator of a demo shop's raw exports with planted, known structure.

Everything is drawn from one ``numpy.random.Generator`` seeded by the caller and is
vectorised over users, orders, lines and events; the only Python loops run over personas,
categories or event types. Outputs are sorted and written without timestamps in their
metadata, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from segmint.demo import _vocab as V

__all__ = ["DemoSummary", "generate_demo"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
HISTORY_DAYS = 731  # two years of days, `end` included
CAMPAIGN_NAME = "spring_reactivation_2026"
CAMPAIGN_DAYS_BEFORE_END = 122  # ~4 months
CAMPAIGN_WINDOW_DAYS = 30
CAMPAIGN_ELIGIBLE_SHARE = 0.40
CAMPAIGN_CONTROL_SHARE = 0.20
CAMPAIGN_DISCOUNT = 0.15
MAX_LINES = 6
MAX_LIST_PRICE = 2_499.99  # with MAX_LINES and qty 1 above 200 EUR, clean totals < 15,000
SURVEY_SHARE = 0.10
ANON_EVENT_SHARE = 0.03

CATS = tuple(V.CATEGORIES)
ORDER_CHANNELS = ("web", "app", "store")
EVENT_SOURCES = ("web", "app", "store", "social", "email")
SIGNUP_SOURCES = ("organic", "paid_search", "social", "referral", "email", "affiliate")
INCOME = ("low", "mid", "high")
STATES = ("paid", "refunded", "cancelled")
STATE_P = (0.96, 0.03, 0.01)
# relative order/event intensity by local hour; hour 2 is empty so that no local time
# falls into a daylight-saving gap or overlap
HOUR_W = np.array(
    [2, 1, 0, 0.5, 0.5, 1, 2, 4, 6, 7, 7, 8, 9, 8, 7, 7, 8, 9, 10, 12, 13, 11, 8, 4], dtype=float
)
WEEKDAY_W = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.4, 1.3])  # Monday .. Sunday
MONTH_W = np.array([0.85, 0.8, 0.9, 0.95, 0.95, 0.9, 0.9, 0.95, 1.0, 1.05, 1.5, 1.75])

# event type mix per source
EVENT_TYPES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "web": (("page_view", "product_view", "search", "add_to_cart"), (0.40, 0.35, 0.15, 0.10)),
    "app": (
        ("app_open", "product_view", "search", "add_to_cart", "page_view"),
        (0.25, 0.35, 0.15, 0.10, 0.15),
    ),
    "store": (("store_visit",), (1.0,)),
    "social": (("like", "share"), (0.6, 0.4)),
    "email": (("email_open", "email_click"), (0.75, 0.25)),
}
SKU_EVENTS = ("product_view", "add_to_cart", "share", "like", "email_click")


@dataclass(frozen=True, kw_only=True)
class _Persona:
    """One planted customer type: named fields, given by keyword (issue 18)."""

    name: str
    share: float
    signup_ago: tuple[int, int]  # signup between these many days before `end` (hi, lo)
    rate: float | None  # orders per active day (gamma-Poisson), or
    count_p: tuple[float, ...] | None  # P(N = 0, 1, 2, ...)
    gap: tuple[int, int]  # order activity stops this many days before `end`
    max_len: tuple[int, int] | None  # active window length after signup
    event_tail: int  # events continue this many days after the last order window
    lines: float  # extra lines per order (Poisson)
    qty: float  # extra units per line (Poisson)
    tilt: float  # preference for expensive items within a category (price ** tilt)
    disc_p: float  # share of orders with a discount
    disc: tuple[float, float]  # discount rate range
    channels: tuple[float, float, float]  # web, app, store
    events: float  # mean events per user
    sources: tuple[float, float, float, float, float]  # web, app, store, social, email
    top_cats: tuple[str, ...]
    age: tuple[float, float]
    income: tuple[float, float, float]
    signup: tuple[float, float, float, float, float, float]
    lift: float  # design: P(extra campaign order | treated)
    satisfaction: float  # survey score propensity
    email_consent: float
    push_consent: float


PERSONAS: tuple[_Persona, ...] = (
    _Persona(
        name="loyal_high_spender",
        share=0.1,
        signup_ago=(730, 150),
        rate=0.13,
        count_p=None,
        gap=(0, 0),
        max_len=None,
        event_tail=0,
        lines=2.0,
        qty=0.3,
        tilt=0.8,
        disc_p=0.05,
        disc=(0.05, 0.1),
        channels=(0.5, 0.35, 0.15),
        events=20.0,
        sources=(0.45, 0.35, 0.05, 0.07, 0.08),
        top_cats=("fashion", "beauty", "home"),
        age=(44, 11),
        income=(0.1, 0.45, 0.45),
        signup=(0.35, 0.15, 0.1, 0.2, 0.15, 0.05),
        lift=0.04,
        satisfaction=0.85,
        email_consent=0.85,
        push_consent=0.6,
    ),
    _Persona(
        name="bargain_hunter",
        share=0.2,
        signup_ago=(730, 90),
        rate=0.11,
        count_p=None,
        gap=(0, 3),
        max_len=None,
        event_tail=0,
        lines=0.5,
        qty=0.5,
        tilt=-0.8,
        disc_p=0.75,
        disc=(0.1, 0.35),
        channels=(0.45, 0.5, 0.05),
        events=17.0,
        sources=(0.4, 0.45, 0.02, 0.08, 0.05),
        top_cats=("grocery", "toys", "pets"),
        age=(34, 10),
        income=(0.5, 0.4, 0.1),
        signup=(0.15, 0.25, 0.15, 0.1, 0.05, 0.3),
        lift=0.1,
        satisfaction=0.6,
        email_consent=0.75,
        push_consent=0.55,
    ),
    _Persona(
        name="big_ticket_occasional",
        share=0.1,
        signup_ago=(730, 120),
        rate=0.015,
        count_p=None,
        gap=(0, 10),
        max_len=None,
        event_tail=0,
        lines=0.2,
        qty=0.0,
        tilt=2.0,
        disc_p=0.1,
        disc=(0.05, 0.15),
        channels=(0.4, 0.1, 0.5),
        events=9.0,
        sources=(0.55, 0.15, 0.2, 0.05, 0.05),
        top_cats=("electronics", "jewelry", "outdoor"),
        age=(47, 10),
        income=(0.05, 0.35, 0.6),
        signup=(0.4, 0.3, 0.05, 0.15, 0.05, 0.05),
        lift=0.03,
        satisfaction=0.75,
        email_consent=0.6,
        push_consent=0.3,
    ),
    _Persona(
        name="new_user",
        share=0.12,
        signup_ago=(60, 2),
        rate=None,
        count_p=(0.0, 0.6, 0.4),
        gap=(0, 0),
        max_len=None,
        event_tail=0,
        lines=0.8,
        qty=0.3,
        tilt=0.0,
        disc_p=0.35,
        disc=(0.1, 0.15),
        channels=(0.6, 0.35, 0.05),
        events=12.0,
        sources=(0.5, 0.4, 0.02, 0.05, 0.03),
        top_cats=("fashion", "shoes", "beauty"),
        age=(29, 8),
        income=(0.35, 0.45, 0.2),
        signup=(0.2, 0.3, 0.3, 0.1, 0.0, 0.1),
        lift=0.0,
        satisfaction=0.7,
        email_consent=0.7,
        push_consent=0.5,
    ),
    _Persona(
        name="at_risk_drifting",
        share=0.15,
        signup_ago=(730, 330),
        rate=0.07,
        count_p=None,
        gap=(120, 200),
        max_len=None,
        event_tail=20,
        lines=0.6,
        qty=0.2,
        tilt=-0.5,
        disc_p=0.2,
        disc=(0.05, 0.2),
        channels=(0.55, 0.25, 0.2),
        events=7.0,
        sources=(0.55, 0.25, 0.1, 0.05, 0.05),
        top_cats=("sports", "outdoor", "shoes"),
        age=(40, 12),
        income=(0.3, 0.5, 0.2),
        signup=(0.35, 0.25, 0.1, 0.1, 0.1, 0.1),
        lift=0.15,
        satisfaction=0.45,
        email_consent=0.7,
        push_consent=0.4,
    ),
    _Persona(
        name="browser",
        share=0.18,
        signup_ago=(730, 30),
        rate=None,
        count_p=(0.3, 0.5, 0.2),
        gap=(0, 0),
        max_len=None,
        event_tail=0,
        lines=0.5,
        qty=0.2,
        tilt=0.0,
        disc_p=0.2,
        disc=(0.05, 0.2),
        channels=(0.3, 0.65, 0.05),
        events=32.0,
        sources=(0.25, 0.6, 0.01, 0.12, 0.02),
        top_cats=("games", "electronics", "music"),
        age=(26, 7),
        income=(0.45, 0.45, 0.1),
        signup=(0.2, 0.15, 0.45, 0.1, 0.02, 0.08),
        lift=0.05,
        satisfaction=0.6,
        email_consent=0.5,
        push_consent=0.7,
    ),
    _Persona(
        name="lost",
        share=0.15,
        signup_ago=(730, 560),
        rate=None,
        count_p=(0.0, 0.25, 0.25, 0.2, 0.15, 0.1, 0.05),
        gap=(380, 380),
        max_len=(30, 180),
        event_tail=30,
        lines=0.7,
        qty=0.3,
        tilt=0.0,
        disc_p=0.2,
        disc=(0.05, 0.2),
        channels=(0.6, 0.1, 0.3),
        events=3.0,
        sources=(0.6, 0.2, 0.1, 0.05, 0.05),
        top_cats=("books", "office", "baby"),
        age=(43, 13),
        income=(0.35, 0.45, 0.2),
        signup=(0.3, 0.3, 0.1, 0.05, 0.05, 0.2),
        lift=0.06,
        satisfaction=0.35,
        email_consent=0.65,
        push_consent=0.2,
    ),
)

YAML_TEXT = """\
# segmint configuration for the generated demo shop.
# The exports keep the shop's own column names; `columns` maps ours -> theirs.
# Written by segmint.demo.generate_demo; the truth/ folder is never read by segmint.
project: demo-shop
store: demo.duckdb
timezone: Europe/Berlin
currency: EUR
validation:
  max_amount: 20000
sources:
  customers:
    type: csv
    path: exports/customers.csv
    table: users
    columns:
      user_id: customer_id
      created_at: signup_date
      email: email_address
      phone: phone_number
      birthday: date_of_birth
      gender: sex
      age: age
      country: country
      city: city
      income_band: income
      acquisition_channel: signup_source
  products:
    type: csv
    path: exports/products.csv
    table: items
    columns: {item_id: sku, title: product_name, category: category, price: list_price, in_stock: in_stock, attributes: attributes}
  orders:
    type: parquet
    path: exports/orders.parquet
    table: orders
    columns: {order_id: order_no, user_id: customer, ts: order_ts, amount: total, currency: currency, channel: sales_channel, discount: discount_amount, status: state}
    values:
      channel: {web: online, app: online, store: offline}
      status: {paid: completed, refunded: refunded, cancelled: cancelled}
  order_lines:
    type: parquet
    path: exports/order_lines.parquet
    table: order_items
    columns: {order_id: order_no, line: line_no, item_id: sku, quantity: qty, unit_price: price}
  events:
    type: jsonl
    path: exports/events.jsonl.gz
    table: events
    columns: {event_id: id, user_id: user, anonymous_id: anon, event: type, ts: timestamp, channel: source, item_id: sku, properties: props}
  consents:
    type: csv
    path: exports/consents.csv
    table: consents
    columns: {user_id: customer_id, channel: channel, purpose: purpose, granted: granted, ts: recorded_at}
cleaning:
  users:
    missing:
      age: median
      gender: {constant: unknown}
    outliers:
      age: {method: iqr, factor: 3.0, action: report}
  orders:
    outliers:
      amount: {method: percentile, upper: 0.999, action: report}
features:
  as_of: latest
  custom:
    store_visits_90d: {table: events, expr: "count(*) FILTER (WHERE event = 'store_visit')"}
segmentations:
  rfm: {type: rfm}
  lifecycle: {type: lifecycle, new_days: 60, active_days: 90, churned_days: 365}
  value: {type: value_tiers, feature: monetary, high: 0.8, potential: 0.5}
  vip:
    type: rules
    rules:
      - {segment: VIP, when: "monetary > 3000 AND recency_days <= 60"}
      - {segment: Deal seekers, when: "discount_share >= 0.2"}
    default: Everyone else
  # predicted value (CLV over predict.horizon_days) and churn risk: the prediction runs
  # at the features' as-of date are used (computed first when missing); see docs/segments.md
  clv_tiers: {type: value_tiers, feature: clv}
  winback:
    type: rules
    rules:
      # repeat buyers still worth something whom the churn model expects to lose (a
      # one-time buyer's CLV is mostly the population's average: frequency >= 2)
      - {segment: win-back, when: "clv >= 200 AND churn_risk >= 0.6 AND frequency >= 2"}
      - {segment: lapsing, when: "churn_risk >= 0.6"}
      - {segment: nurture, when: "clv >= 500"}
    default: low value
  clusters:
    type: kmeans
    features: [recency_days, frequency, monetary, avg_order_value, tenure_days,
               discount_share, events_30d, app_share, offline_share]
    k: auto
    k_min: 2
    k_max: 10
"""


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate_demo` wrote.

    Attributes
    ----------
    out_dir : Path
        The demo project folder (holds ``segmint.yaml``).
    paths : tuple of Path
        Every file written, sorted.
    row_counts : dict
        Data rows per written data file, keyed by the path relative to ``out_dir``.
    defects : dict or None
        Exact injected defect counts when generated with ``dirty=True``, else None.
    """

    out_dir: Path
    paths: tuple[Path, ...]
    row_counts: dict[str, int]
    defects: dict[str, int] | None = None

    @property
    def config_path(self) -> Path:
        return self.out_dir / "segmint.yaml"


# ----------------------------------------------------------------------------- helpers


def _ids(prefix: str, nums: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers, as an object array of str."""
    s = pc.utf8_lpad(pc.cast(pa.array(nums, pa.int64()), pa.string()), width=width, padding="0")
    return np.asarray(pc.binary_join_element_wise(prefix, s, "").to_numpy(zero_copy_only=False))


def _fmt_ts(ts: np.ndarray, fmt: str) -> np.ndarray:
    arr = pa.array(ts.astype("datetime64[s]"), pa.timestamp("s"))
    return np.asarray(pc.strftime(arr, format=fmt).to_numpy(zero_copy_only=False))


def _join(*parts: object) -> np.ndarray:
    """Element-wise string concatenation of str scalars and object arrays."""
    args = [p if isinstance(p, str) else pa.array(p, pa.string()) for p in parts]
    return np.asarray(pc.binary_join_element_wise(*args, "").to_numpy(zero_copy_only=False))


def _pick(values: tuple[str, ...] | list[str], idx: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=object)[idx]


def _choice_by_group(rng: np.random.Generator, group: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """For each element, draw an index from ``probs[group]`` (one row of probs per group)."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(group.size)
    out = np.zeros(group.size, dtype=np.int64)
    for k in range(probs.shape[1] - 1):  # loops over the (few) choices, not the rows
        out += u >= cum[group, k]
    return out


def _exact_counts(shares: np.ndarray, n: int) -> np.ndarray:
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


class _Calendar:
    """Day weights (weekly and year-end seasonality) and local time sampling."""

    def __init__(self, end: pd.Timestamp) -> None:
        self.end_day = np.datetime64(end.normalize().date(), "D")
        self.start_day = self.end_day - np.timedelta64(HISTORY_DAYS - 1, "D")
        days = self.start_day + np.arange(HISTORY_DAYS).astype("timedelta64[D]")
        idx = pd.DatetimeIndex(days)
        w = WEEKDAY_W[idx.day_of_week.to_numpy()] * MONTH_W[idx.month.to_numpy() - 1]
        # the run-up to Christmas and Black-Friday week are the busiest of all
        hot = ((idx.month == 12) & (idx.day <= 22)) | ((idx.month == 11) & (idx.day >= 24))
        w = w * np.where(np.asarray(hot), 1.25, 1.0)
        self.cum = np.concatenate([[0.0], np.cumsum(w)])
        self.hour_p = HOUR_W / HOUR_W.sum()

    def days(self, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Seasonally weighted day indices in ``[lo, hi]`` (inclusive, per element)."""
        a, b = self.cum[lo], self.cum[hi + 1]
        d = np.searchsorted(self.cum, a + rng.random(lo.size) * (b - a), side="right") - 1
        return np.clip(d, lo, hi)

    def times(self, rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
        """Local naive datetime64[s] on ``day`` with a diurnal hour profile."""
        hour = rng.choice(24, size=day.size, p=self.hour_p)
        sec = hour * 3600 + rng.integers(0, 3600, size=day.size)
        return self.start_day.astype("datetime64[s]") + (
            day.astype(np.int64) * 86_400 + sec
        ).astype("timedelta64[s]")


# ----------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class _Catalog:
    sku: np.ndarray
    cat: np.ndarray  # category index per product
    price_cents: np.ndarray
    pop: np.ndarray
    frame: pd.DataFrame


def _make_catalog(rng: np.random.Generator, n_products: int = 2000) -> _Catalog:
    n_cat = len(CATS)
    counts = _exact_counts(rng.dirichlet(np.full(n_cat, 8.0)), n_products)
    cat = np.repeat(np.arange(n_cat), counts)
    med = np.array([V.CATEGORIES[c][0] for c in CATS])[cat]
    sig = np.array([V.CATEGORIES[c][1] for c in CATS])[cat]
    price = np.clip(med * np.exp(sig * rng.standard_normal(n_products)), 1.0, MAX_LIST_PRICE)
    price_cents = (np.floor(price) * 100 + 99).astype(np.int64)
    price_cents = np.minimum(price_cents, int(round(MAX_LIST_PRICE * 100)))
    pop = rng.lognormal(0.0, 1.0, n_products)
    noun_idx = rng.integers(0, 1_000_000, n_products)
    nouns = np.array(
        [V.CATEGORIES[c][2][k % len(V.CATEGORIES[c][2])] for c in CATS for k in range(7)],
        dtype=object,
    ).reshape(n_cat, 7)
    noun = nouns[cat, noun_idx % 7]
    adj = _pick(V.ADJECTIVES, rng.integers(0, len(V.ADJECTIVES), n_products))
    num = rng.integers(1, 100, n_products).astype(str).astype(object)
    name = _join(adj, " ", noun, " ", num)
    brand = _pick(V.BRANDS, rng.integers(0, len(V.BRANDS), n_products))
    color = _pick(V.COLORS, rng.integers(0, len(V.COLORS), n_products))
    attributes = _join('{"brand": "', brand, '", "color": "', color, '"}')
    sku = _ids("SKU", np.arange(1, n_products + 1), 5)
    in_stock = np.where(rng.random(n_products) < 0.92, "yes", "no").astype(object)
    frame = pd.DataFrame(
        {
            "sku": sku,
            "product_name": name,
            "category": _pick(CATS, cat),
            "list_price": price_cents / 100.0,
            "in_stock": in_stock,
            "attributes": attributes,
        }
    )
    return _Catalog(sku, cat, price_cents, pop, frame)


def _persona_affinity(rng: np.random.Generator) -> np.ndarray:
    aff = np.empty((len(PERSONAS), len(CATS)))
    for i, p in enumerate(PERSONAS):
        alpha = np.full(len(CATS), 0.25)
        alpha[[CATS.index(c) for c in p.top_cats]] = 6.0
        aff[i] = rng.dirichlet(alpha)
    return aff


def _product_weights(catalog: _Catalog, aff: np.ndarray) -> np.ndarray:
    """P(product | persona): category affinity times price-tilted popularity in category."""
    price = catalog.price_cents / 100.0
    out = np.empty((len(PERSONAS), catalog.sku.size))
    for i, p in enumerate(PERSONAS):
        w = catalog.pop * price**p.tilt
        w = w / np.bincount(catalog.cat, weights=w)[catalog.cat]
        out[i] = aff[i][catalog.cat] * w
        out[i] /= out[i].sum()
    return out


def _category_weights(catalog: _Catalog) -> np.ndarray:
    """P(product | persona, category): price-tilted popularity; row persona * n_cat + cat."""
    price = catalog.price_cents / 100.0
    n_cat, n_prod = len(CATS), catalog.sku.size
    out = np.zeros((len(PERSONAS) * n_cat, n_prod))
    for i, p in enumerate(PERSONAS):
        w = catalog.pop * price**p.tilt
        out[i * n_cat + catalog.cat, np.arange(n_prod)] = w
    return out / out.sum(axis=1, keepdims=True)


def _draw_products(rng: np.random.Generator, group: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One product per element, from ``weights[group]``; loops over groups only."""
    out = np.empty(group.size, dtype=np.int64)
    for g in range(weights.shape[0]):
        m = np.flatnonzero(group == g)
        if m.size:
            out[m] = rng.choice(weights.shape[1], size=m.size, p=weights[g])
    return out


# ----------------------------------------------------------------------------- users


def _make_users(
    rng: np.random.Generator, n: int, cal: _Calendar, end: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    shares = np.array([p.share for p in PERSONAS])
    persona = rng.permutation(np.repeat(np.arange(len(PERSONAS)), _exact_counts(shares, n)))
    hi = np.array([p.signup_ago[0] for p in PERSONAS])[persona]
    lo = np.array([p.signup_ago[1] for p in PERSONAS])[persona]
    last = HISTORY_DAYS - 1
    signup_day = last - rng.integers(lo, hi + 1)
    signup_ts = cal.times(rng, signup_day)

    sex = _pick(("F", "M", "X"), rng.choice(3, size=n, p=[0.49, 0.49, 0.02]))
    first = np.where(
        sex == "F",
        _pick(V.FIRST_NAMES_F, rng.integers(0, len(V.FIRST_NAMES_F), n)),
        _pick(V.FIRST_NAMES_M, rng.integers(0, len(V.FIRST_NAMES_M), n)),
    )
    lastn = _pick(V.LAST_NAMES, rng.integers(0, len(V.LAST_NAMES), n))
    tag = (rng.permutation(n) + 100).astype(str).astype(object)
    email = _join(first, ".", lastn, tag, "@example.com")

    countries = tuple(V.COUNTRIES)
    c_p = np.array([V.COUNTRIES[c][0] for c in countries])
    country_idx = rng.choice(len(countries), size=n, p=c_p / c_p.sum())
    city = np.empty(n, dtype=object)
    for ci, c in enumerate(countries):
        m = np.flatnonzero(country_idx == ci)
        cities = V.COUNTRIES[c][2]
        w = 1.0 / np.arange(1, len(cities) + 1)
        city[m] = _pick(cities, rng.choice(len(cities), size=m.size, p=w / w.sum()))
    prefix = _pick(tuple(V.COUNTRIES[c][1] for c in countries), country_idx)
    phone = _join(
        prefix,
        " ",
        rng.integers(150, 180, n).astype(str).astype(object),
        " ",
        rng.integers(1_000_000, 10_000_000, n).astype(str).astype(object),
    )

    a_mu = np.array([p.age[0] for p in PERSONAS])[persona]
    a_sd = np.array([p.age[1] for p in PERSONAS])[persona]
    age_draw = np.clip(np.round(a_mu + a_sd * rng.standard_normal(n)), 18, 85)
    end_d = np.datetime64(end.normalize().date(), "D")
    dob = end_d - (np.floor(age_draw * 365.25) + rng.integers(0, 365, n)).astype("timedelta64[D]")
    dob_i = pd.DatetimeIndex(dob)
    md_after = (dob_i.month.to_numpy() > end.month) | (
        (dob_i.month.to_numpy() == end.month) & (dob_i.day.to_numpy() > end.day)
    )
    age = (end.year - dob_i.year.to_numpy() - md_after.astype(int)).astype(np.int64)

    income = _pick(INCOME, _choice_by_group(rng, persona, np.array([p.income for p in PERSONAS])))
    source = _pick(
        SIGNUP_SOURCES, _choice_by_group(rng, persona, np.array([p.signup for p in PERSONAS]))
    )
    customer_id = _ids("C", np.arange(1, n + 1), 6)
    frame = pd.DataFrame(
        {
            "customer_id": customer_id,
            "signup_date": _fmt_ts(signup_ts, "%Y-%m-%d %H:%M:%S"),
            "email_address": email,
            "phone_number": phone,
            "date_of_birth": np.datetime_as_string(dob, unit="D").astype(object),
            "sex": sex,
            "age": age,
            "country": _pick(countries, country_idx),
            "city": city,
            "income": income,
            "signup_source": source,
        }
    )
    arrays = {
        "persona": persona,
        "signup_day": signup_day,
        "signup_ts": signup_ts,
        "customer_id": customer_id,
    }
    return frame, arrays


# ----------------------------------------------------------------------------- orders


def _order_windows(
    rng: np.random.Generator, persona: np.ndarray, signup_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    last = HISTORY_DAYS - 1
    g_lo = np.array([p.gap[0] for p in PERSONAS])[persona]
    g_hi = np.array([p.gap[1] for p in PERSONAS])[persona]
    wend = last - rng.integers(g_lo, g_hi + 1)
    has_len = np.array([p.max_len is not None for p in PERSONAS])[persona]
    l_lo = np.array([(p.max_len or (0, 0))[0] for p in PERSONAS])[persona]
    l_hi = np.array([(p.max_len or (0, 0))[1] for p in PERSONAS])[persona]
    length = rng.integers(l_lo, l_hi + 1)
    wend = np.where(has_len, np.minimum(wend, signup_day + length), wend)
    lo = signup_day + 1
    return lo, np.maximum(wend, lo)


def _order_counts(
    rng: np.random.Generator, persona: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    n = persona.size
    counts = np.zeros(n, dtype=np.int64)
    hetero = rng.gamma(4.0, 0.25, n)
    for i, p in enumerate(PERSONAS):
        m = np.flatnonzero(persona == i)
        if p.rate is not None:
            counts[m] = rng.poisson(p.rate * (hi[m] - lo[m] + 1) * hetero[m])
        else:
            assert p.count_p is not None
            cp = np.asarray(p.count_p)
            counts[m] = rng.choice(cp.size, size=m.size, p=cp / cp.sum())
    return counts


def _make_lines(
    rng: np.random.Generator,
    o_user: np.ndarray,
    o_persona: np.ndarray,
    catalog: _Catalog,
    pweights: np.ndarray,
    fav_cat: np.ndarray,
) -> dict[str, np.ndarray]:
    """Lines for every order (in order index order)."""
    lam = np.array([p.lines for p in PERSONAS])[o_persona]
    n_lines = np.minimum(1 + rng.poisson(lam), MAX_LINES)
    l_order = np.repeat(np.arange(o_user.size), n_lines)
    starts = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
    line_no = np.arange(l_order.size) - starts[l_order] + 1
    l_persona = o_persona[l_order]
    prod = _draw_products(rng, l_persona, pweights)
    # a fifth of the lines come from the user's own favourite category
    fav = rng.random(l_order.size) < 0.2
    if fav.any():
        fav_idx = np.flatnonzero(fav)
        fcat = fav_cat[o_user[l_order[fav_idx]]]
        prod[fav_idx] = _draw_products(
            rng, l_persona[fav_idx] * len(CATS) + fcat, _category_weights(catalog)
        )
    price = catalog.price_cents[prod]
    q_lam = np.array([p.qty for p in PERSONAS])[l_persona]
    qty = np.minimum(1 + rng.poisson(q_lam), 5)
    qty = np.where(price > 20_000, 1, qty)
    return {
        "order": l_order,
        "line_no": line_no.astype(np.int64),
        "prod": prod,
        "qty": qty.astype(np.int64),
        "price_cents": price,
        "starts": starts,
    }


# ----------------------------------------------------------------------------- events


def _event_props(
    rng: np.random.Generator, etype: np.ndarray, persona: np.ndarray, aff: np.ndarray
) -> np.ndarray:
    n = etype.size
    props = np.full(n, "{}", dtype=object)
    m = np.flatnonzero(etype == "page_view")
    if m.size:
        cat = _draw_products(rng, persona[m], aff)
        props[m] = _join('{"path": "/c/', _pick(CATS, cat), '"}')
    m = np.flatnonzero(etype == "search")
    if m.size:
        term = _pick(V.SEARCH_TERMS, rng.integers(0, len(V.SEARCH_TERMS), m.size))
        props[m] = _join('{"query": "', term, '"}')
    m = np.flatnonzero(etype == "add_to_cart")
    if m.size:
        q = (1 + rng.poisson(0.3, m.size)).astype(str).astype(object)
        props[m] = _join('{"qty": ', q, "}")
    m = np.flatnonzero(etype == "app_open")
    if m.size:
        os_ = _pick(("ios", "android"), (rng.random(m.size) < 0.55).astype(int))
        props[m] = _join('{"os": "', os_, '"}')
    m = np.flatnonzero(np.isin(etype, ("like", "share")))
    if m.size:
        net = _pick(("instagram", "facebook", "tiktok"), rng.integers(0, 3, m.size))
        props[m] = _join('{"network": "', net, '"}')
    m = np.flatnonzero(etype == "store_visit")
    if m.size:
        props[m] = _ids('{"store_id": "S', rng.integers(1, 41, m.size), 3) + '"}'
    m = np.flatnonzero(np.isin(etype, ("email_open", "email_click")))
    if m.size:
        props[m] = '{"campaign": "newsletter"}'
    return props


def _survey_scores(rng: np.random.Generator, persona: np.ndarray, nps: np.ndarray) -> np.ndarray:
    sat = np.array([p.satisfaction for p in PERSONAS])[persona]
    return np.where(nps, rng.binomial(10, sat), 1 + rng.binomial(4, sat))


# ----------------------------------------------------------------------------- writing


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def _write_jsonl_gz(lines: np.ndarray, path: Path, chunk: int = 100_000) -> None:
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=5, mtime=0) as gz,
    ):
        for at in range(0, lines.size, chunk):  # bounded memory; one write per chunk
            gz.write(("\n".join(lines[at : at + chunk].tolist()) + "\n").encode("utf-8"))


# ----------------------------------------------------------------------------- main


# --- generate_demo's stages. Each draws from the one generator in a fixed order: calling
# them in another order (or drawing more inside one) changes every file after it.


@dataclass(frozen=True)
class _Consents:
    """Consents at signup (per user) and the later e-mail withdrawals."""

    email_ok: np.ndarray
    sms_ok: np.ndarray
    push_ok: np.ndarray
    withdraw: np.ndarray
    w_ts: np.ndarray


def _draw_consents(
    rng: np.random.Generator, persona: np.ndarray, signup_day: np.ndarray, cal: _Calendar
) -> _Consents:
    n_users = persona.size
    last = HISTORY_DAYS - 1
    email_ok = rng.random(n_users) < np.array([p.email_consent for p in PERSONAS])[persona]
    sms_ok = rng.random(n_users) < 0.35
    push_ok = rng.random(n_users) < np.array([p.push_consent for p in PERSONAS])[persona]
    withdraw = email_ok & (rng.random(n_users) < 0.05 / max(email_ok.mean(), 1e-9))
    w_day = rng.integers(signup_day + 1, last + 1)
    w_ts = cal.times(rng, w_day)
    return _Consents(email_ok, sms_ok, push_ok, withdraw, w_ts)


@dataclass(frozen=True)
class _Design:
    """The planted randomized campaign: who was eligible, treated, and would respond."""

    sent_day: int
    sent_ts: np.datetime64
    win_end_ts: np.datetime64
    eligible_idx: np.ndarray
    arm_control: np.ndarray
    treated: np.ndarray
    eligible: np.ndarray
    responds: np.ndarray
    camp_users: np.ndarray


def _draw_design(
    rng: np.random.Generator,
    persona: np.ndarray,
    signup_day: np.ndarray,
    consents: _Consents,
    cal: _Calendar,
) -> _Design:
    n_users = persona.size
    sent_day = HISTORY_DAYS - 1 - CAMPAIGN_DAYS_BEFORE_END
    sent_ts = (cal.start_day + np.timedelta64(sent_day, "D")).astype(
        "datetime64[s]"
    ) + np.timedelta64(10 * 3600, "s")
    win_end_ts = sent_ts + np.timedelta64(CAMPAIGN_WINDOW_DAYS * 86_400, "s")
    c = consents
    reachable = (signup_day < sent_day - 30) & c.email_ok & ~(c.withdraw & (c.w_ts < sent_ts))
    cand = np.flatnonzero(reachable)
    n_elig = min(round(CAMPAIGN_ELIGIBLE_SHARE * n_users), cand.size)
    eligible_idx = np.sort(rng.choice(cand, size=n_elig, replace=False))
    n_control = round(CAMPAIGN_CONTROL_SHARE * n_elig)
    arm_control = np.zeros(n_elig, dtype=bool)
    arm_control[rng.permutation(n_elig)[:n_control]] = True
    treated = np.zeros(n_users, dtype=bool)
    treated[eligible_idx[~arm_control]] = True
    eligible = np.zeros(n_users, dtype=bool)
    eligible[eligible_idx] = True
    lift_p = np.array([p.lift for p in PERSONAS])[persona]
    responds = eligible & (rng.random(n_users) < lift_p)  # potential outcome under treatment
    camp_users = np.flatnonzero(treated & responds)
    return _Design(
        sent_day, sent_ts, win_end_ts, eligible_idx, arm_control, treated, eligible, responds,
        camp_users,
    )  # fmt: skip


@dataclass(frozen=True)
class _Orders:
    """Every order (organic and campaign-driven) with its lines, amounts and state;
    ``perm`` sorts them by time then customer, ``rank`` is each order's sorted position."""

    o_user: np.ndarray
    o_ts: np.ndarray
    is_camp: np.ndarray
    hi: np.ndarray  # last day of each user's order window
    lines: dict[str, np.ndarray]
    total: np.ndarray
    discount: np.ndarray
    ch: np.ndarray
    state: np.ndarray
    perm: np.ndarray
    rank: np.ndarray
    order_no_sorted: np.ndarray

    @property
    def n_orders(self) -> int:
        return int(self.o_user.size)


def _draw_orders(
    rng: np.random.Generator,
    persona: np.ndarray,
    signup_day: np.ndarray,
    design: _Design,
    cal: _Calendar,
    catalog: _Catalog,
    pweights: np.ndarray,
    fav_cat: np.ndarray,
) -> _Orders:
    n_users = persona.size
    lo, hi = _order_windows(rng, persona, signup_day)
    counts = _order_counts(rng, persona, lo, hi)
    o_user = np.repeat(np.arange(n_users), counts)
    o_day = cal.days(rng, lo[o_user], hi[o_user])
    o_ts = cal.times(rng, o_day)
    # campaign-driven orders (treated responders only), mostly in the first days
    camp_users = design.camp_users
    c_day = design.sent_day + np.minimum(
        np.floor(rng.exponential(6.0, camp_users.size)), 29
    ).astype(np.int64)
    c_ts = cal.times(rng, c_day)
    c_ts = np.maximum(c_ts, design.sent_ts + np.timedelta64(3600, "s"))
    o_user = np.concatenate([o_user, camp_users])
    o_ts = np.concatenate([o_ts, c_ts])
    is_camp = np.concatenate([np.zeros(counts.sum(), bool), np.ones(camp_users.size, bool)])
    o_persona = persona[o_user]
    n_orders = o_user.size

    lines = _make_lines(rng, o_user, o_persona, catalog, pweights, fav_cat)
    subtotal = np.add.reduceat(lines["qty"] * lines["price_cents"], lines["starts"])
    d_p = np.array([p.disc_p for p in PERSONAS])[o_persona]
    d_lo = np.array([p.disc[0] for p in PERSONAS])[o_persona]
    d_hi = np.array([p.disc[1] for p in PERSONAS])[o_persona]
    rate = np.where(rng.random(n_orders) < d_p, d_lo + rng.random(n_orders) * (d_hi - d_lo), 0.0)
    rate = np.where(is_camp, CAMPAIGN_DISCOUNT, rate)
    discount = np.round(subtotal * rate).astype(np.int64)
    total = subtotal - discount
    ch = _choice_by_group(rng, o_persona, np.array([p.channels for p in PERSONAS]))
    state = rng.choice(3, size=n_orders, p=STATE_P)
    state = np.where(is_camp, 0, state)

    # sort orders by time, then customer; number them in that order
    perm = np.lexsort((o_user, o_ts))
    rank = np.empty(n_orders, dtype=np.int64)
    rank[perm] = np.arange(n_orders)
    order_no_sorted = _ids("O", np.arange(1, n_orders + 1), 8)
    return _Orders(
        o_user, o_ts, is_camp, hi, lines, total, discount, ch, state, perm, rank, order_no_sorted
    )


@dataclass(frozen=True)
class _Events:
    """Events of known users (behaviour, campaign e-mails, surveys), unsorted."""

    user: np.ndarray
    ts: np.ndarray
    type: np.ndarray
    src: np.ndarray
    props: np.ndarray


def _draw_user_events(
    rng: np.random.Generator,
    persona: np.ndarray,
    signup_day: np.ndarray,
    hi: np.ndarray,
    design: _Design,
    cal: _Calendar,
    aff: np.ndarray,
) -> _Events:
    n_users = persona.size
    last = HISTORY_DAYS - 1
    ev_mean = np.array([p.events for p in PERSONAS])[persona]
    n_ev = rng.poisson(ev_mean * rng.gamma(3.0, 1 / 3.0, n_users))
    tail = np.array([p.event_tail for p in PERSONAS])[persona]
    has_gap = np.array([p.gap[1] > 0 or p.max_len is not None for p in PERSONAS])[persona]
    e_hi = np.where(has_gap, np.minimum(hi + tail, last), last)
    e_lo = signup_day + 1
    e_hi = np.maximum(e_hi, e_lo)
    e_user = np.repeat(np.arange(n_users), n_ev)
    e_ts = cal.times(rng, cal.days(rng, e_lo[e_user], e_hi[e_user]))
    e_persona = persona[e_user]
    src = _choice_by_group(rng, e_persona, np.array([p.sources for p in PERSONAS]))
    etype = np.empty(e_user.size, dtype=object)
    for si, s in enumerate(EVENT_SOURCES):
        m = np.flatnonzero(src == si)
        types, probs = EVENT_TYPES[s]
        etype[m] = _pick(types, rng.choice(len(types), size=m.size, p=probs))
    props = _event_props(rng, etype, e_persona, aff)
    e_src = _pick(EVENT_SOURCES, src)

    # campaign emails for the treated: responders always open and click
    t_idx = np.flatnonzero(design.treated)
    opened = design.responds[t_idx] | (rng.random(t_idx.size) < 0.35)
    clicked = design.responds[t_idx] | (opened & (rng.random(t_idx.size) < 0.25))
    op_u, cl_u = t_idx[opened], t_idx[clicked]
    sent_ts = design.sent_ts
    op_ts = sent_ts + rng.integers(600, 2 * 86_400, op_u.size).astype("timedelta64[s]")
    cl_ts = sent_ts + rng.integers(2 * 86_400, 3 * 86_400, cl_u.size).astype("timedelta64[s]")
    camp_props = '{"campaign": "' + CAMPAIGN_NAME + '"}'

    # surveys for ~10% of users
    s_user = np.sort(rng.choice(n_users, size=round(SURVEY_SHARE * n_users), replace=False))
    s_nps = rng.random(s_user.size) < 0.5
    s_score = _survey_scores(rng, persona[s_user], s_nps)
    s_ts = cal.times(rng, cal.days(rng, e_lo[s_user], e_hi[s_user]))
    s_type = np.where(s_nps, "nps", "csat").astype(object)
    s_props = _join('{"score": ', s_score.astype(str).astype(object), "}")

    return _Events(
        user=np.concatenate([e_user, op_u, cl_u, s_user]),
        ts=np.concatenate([e_ts, op_ts, cl_ts, s_ts]),
        type=np.concatenate(
            [
                etype,
                np.full(op_u.size, "email_open", dtype=object),
                np.full(cl_u.size, "email_click", dtype=object),
                s_type,
            ]
        ),
        src=np.concatenate(
            [e_src, np.full(op_u.size + cl_u.size + s_user.size, "email", dtype=object)]
        ),
        props=np.concatenate(
            [props, np.full(op_u.size + cl_u.size, camp_props, dtype=object), s_props]
        ),
    )


def _event_lines(
    rng: np.random.Generator,
    events: _Events,
    persona: np.ndarray,
    cid: np.ndarray,
    cal: _Calendar,
    catalog: _Catalog,
    pweights: np.ndarray,
    aff: np.ndarray,
) -> np.ndarray:
    """The events file's JSON lines: known users' events with their products, plus
    anonymous traffic, in UTC and sorted."""
    n_users = persona.size
    last = HISTORY_DAYS - 1
    all_user = events.user
    all_persona = persona[all_user]
    needs_sku = np.isin(events.type, SKU_EVENTS)
    sku_idx = _draw_products(rng, all_persona, pweights)
    all_sku = np.where(needs_sku, _join('"', catalog.sku[sku_idx], '"'), "null").astype(object)
    all_user_json = _join('"', cid[all_user], '"')
    all_anon = np.full(all_user.size, "null", dtype=object)

    # anonymous traffic (not logged in)
    n_anon = round(ANON_EVENT_SHARE * all_user.size)
    anon_pool = _ids("a-", rng.integers(0, 16**8, max(n_users // 5, 1)), 10)
    a_ids = anon_pool[rng.integers(0, anon_pool.size, n_anon)]
    a_ts = cal.times(rng, cal.days(rng, np.zeros(n_anon, np.int64), np.full(n_anon, last)))
    a_src = _pick(("web", "app"), (rng.random(n_anon) < 0.3).astype(int))
    a_type = _pick(
        ("page_view", "product_view", "search"), rng.choice(3, n_anon, p=[0.5, 0.35, 0.15])
    )
    a_props = _event_props(rng, a_type, rng.integers(0, len(PERSONAS), n_anon), aff)
    a_sku_idx = rng.choice(catalog.sku.size, size=n_anon, p=catalog.pop / catalog.pop.sum())
    a_sku = np.where(a_type == "product_view", _join('"', catalog.sku[a_sku_idx], '"'), "null")

    ev_user = np.concatenate([all_user_json, np.full(n_anon, "null", dtype=object)])
    ev_anon = np.concatenate([all_anon, _join('"', a_ids, '"')])
    ev_ts = np.concatenate([events.ts, a_ts])
    ev_type = np.concatenate([events.type, a_type])
    ev_src = np.concatenate([events.src, a_src])
    ev_sku = np.concatenate([all_sku, a_sku.astype(object)])
    ev_props = np.concatenate([events.props, a_props])
    ev_key = np.concatenate([all_user, np.full(n_anon, n_users)])
    # local wall time -> UTC
    utc = (
        pd.DatetimeIndex(ev_ts)
        .tz_localize("Europe/Berlin", ambiguous="NaT", nonexistent="shift_forward")
        .tz_convert("UTC")
        .tz_localize(None)
        .to_numpy()
        .astype("datetime64[s]")
    )
    eperm = np.lexsort((ev_type.astype(str), ev_key, utc))
    return _join(
        '{"id": "',
        _ids("E", np.arange(1, utc.size + 1), 9),
        '", "user": ',
        ev_user[eperm],
        ', "anon": ',
        ev_anon[eperm],
        ', "type": "',
        ev_type[eperm],
        '", "timestamp": "',
        _fmt_ts(utc[eperm], "%Y-%m-%dT%H:%M:%SZ"),
        '", "source": "',
        ev_src[eperm],
        '", "sku": ',
        ev_sku[eperm],
        ', "props": ',
        ev_props[eperm],
        "}",
    )


def _order_tables(
    orders: _Orders, catalog: _Catalog, cid: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The orders and order-lines columns (sorted), and the number of lines per order."""
    perm, rank, n_orders = orders.perm, orders.rank, orders.n_orders
    lines = orders.lines
    o_cols = {
        "order_no": orders.order_no_sorted,
        "customer": cid[orders.o_user[perm]],
        "order_ts": orders.o_ts[perm],
        "total": orders.total[perm] / 100.0,
        "currency": np.full(n_orders, "EUR", dtype=object),
        "sales_channel": _pick(ORDER_CHANNELS, orders.ch[perm]),
        "discount_amount": orders.discount[perm] / 100.0,
        "state": _pick(STATES, orders.state[perm]),
    }
    l_rank = rank[lines["order"]]
    lperm = np.lexsort((lines["line_no"], l_rank))
    l_cols = {
        "order_no": orders.order_no_sorted[l_rank[lperm]],
        "line_no": lines["line_no"][lperm],
        "sku": catalog.sku[lines["prod"][lperm]],
        "qty": lines["qty"][lperm],
        "price": lines["price_cents"][lperm] / 100.0,
    }
    return o_cols, l_cols, np.bincount(l_rank, minlength=n_orders)


class _Written:
    """The files written so far and their row counts."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.paths: dict[str, Path] = {}
        self.rows: dict[str, int] = {}

    def record(self, rel: str, n: int) -> Path:
        p = self.out / rel
        self.paths[rel] = p
        self.rows[rel] = n
        return p


def _write_orders(
    written: _Written,
    o_cols: dict[str, np.ndarray],
    l_cols: dict[str, np.ndarray],
    *,
    dirty: bool,
) -> int:
    """orders.parquet and order_lines.parquet; returns the number of lines."""
    o_fields = [
        pa.field("order_no", pa.string()),
        pa.field("customer", pa.string()),
        pa.field("order_ts", pa.string() if dirty else pa.timestamp("us")),
        pa.field("total", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("sales_channel", pa.string()),
        pa.field("discount_amount", pa.float64()),
        pa.field("state", pa.string()),
    ]
    o_table = pa.table(
        [pa.array(o_cols[f.name], f.type) for f in o_fields], schema=pa.schema(o_fields)
    )
    _write_parquet(o_table, written.record("exports/orders.parquet", o_table.num_rows))
    l_fields = [
        pa.field("order_no", pa.string()),
        pa.field("line_no", pa.int32()),
        pa.field("sku", pa.string()),
        pa.field("qty", pa.int32()),
        pa.field("price", pa.float64()),
    ]
    l_table = pa.table(
        [pa.array(l_cols[f.name], f.type) for f in l_fields], schema=pa.schema(l_fields)
    )
    _write_parquet(l_table, written.record("exports/order_lines.parquet", l_table.num_rows))
    return int(l_table.num_rows)


def _write_consents(
    written: _Written, users: pd.DataFrame, cid: np.ndarray, consents: _Consents
) -> None:
    """consents.csv: three rows per user at signup, plus e-mail withdrawals."""
    n_users = cid.size
    signup_str = users["signup_date"].to_numpy()
    wd = np.flatnonzero(consents.withdraw)
    cons = pd.DataFrame(
        {
            "customer_id": np.concatenate([cid, cid, cid, cid[wd]]),
            "channel": np.repeat(
                np.array(["email", "sms", "push", "email"], dtype=object),
                [n_users, n_users, n_users, wd.size],
            ),
            "purpose": "marketing",
            "granted": np.where(
                np.concatenate(
                    [consents.email_ok, consents.sms_ok, consents.push_ok, np.zeros(wd.size, bool)]
                ),
                "true",
                "false",
            ).astype(object),
            "recorded_at": np.concatenate(
                [
                    signup_str,
                    signup_str,
                    signup_str,
                    _fmt_ts(consents.w_ts[wd], "%Y-%m-%d %H:%M:%S"),
                ]
            ),
        }
    )
    cons = cons.sort_values(["customer_id", "recorded_at", "channel"], kind="stable")
    _write_csv(cons.reset_index(drop=True), written.record("exports/consents.csv", len(cons)))


def _write_campaign(written: _Written, cid: np.ndarray, design: _Design) -> str:
    """The campaign's assignment file; returns its send time as written."""
    sent_str = _fmt_ts(np.array([design.sent_ts]), "%Y-%m-%d %H:%M:%S")[0]
    camp = pd.DataFrame(
        {
            "customer_id": cid[design.eligible_idx],
            "campaign": CAMPAIGN_NAME,
            "arm": np.where(design.arm_control, "control", "treatment").astype(object),
            "sent_at": sent_str,
        }
    )
    _write_csv(camp, written.record(f"campaigns/{CAMPAIGN_NAME}.csv", len(camp)))
    return str(sent_str)


# long on purpose: a 45-line docstring; the ~85-line body is a list of named stages that
# must draw from the one generator in this order (reordering changes every file)
def generate_demo(
    out_dir: str | Path,
    *,
    n_users: int = 50_000,
    seed: int = 42,
    dirty: bool = False,
    end: str = "2026-10-31",
) -> DemoSummary:
    """Write a demo shop's raw exports, a ``segmint.yaml`` mapping them, and the truth.

    The exports (customers, products, orders, order lines, events, consents) use the
    shop's own column names; ``segmint.yaml`` maps them to segmint's model. Seven
    personas with known shares, category affinities and behaviour are planted, together
    with one randomized campaign (``campaigns/spring_reactivation_2026.csv``) whose true
    per-persona effect is recorded in ``truth/truth.json``. segmint never reads
    ``truth/``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into; created if missing. Existing files are overwritten.
    n_users : int, default 50_000
        Number of customers. About 20 orders and 15 events are written per customer.
    seed : int, default 42
        Seed of the one random generator; the same arguments give byte-identical files.
    dirty : bool, default False
        Inject defects at known rates (blank ages, negative, absurd and duplicated orders,
        malformed order timestamps, orders of unknown customers) and record their exact
        counts in ``truth/truth.json`` under ``"defects"``. In dirty mode ``order_ts`` is a
        string column.
    end : str, default "2026-10-31"
        Last day of the two-year history (shop local time, Europe/Berlin).

    Returns
    -------
    DemoSummary
        The folder, the files written, rows per file and, if dirty, the defect counts.

    Raises
    ------
    ValueError
        If ``n_users`` is smaller than 100.
    """
    if n_users < 100:
        raise ValueError(f"n_users must be at least 100, got {n_users}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    for sub in ("exports", "campaigns", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    end_ts = pd.Timestamp(end)
    rng = np.random.default_rng(seed)
    cal = _Calendar(end_ts)

    # --- draw (in this order: the generator is shared)
    catalog = _make_catalog(rng)
    aff = _persona_affinity(rng)
    pweights = _product_weights(catalog, aff)
    users, ua = _make_users(rng, n_users, cal, end_ts)
    persona, signup_day = ua["persona"], ua["signup_day"]
    cid = ua["customer_id"]
    # a personal favourite category: drawn from a flattened persona affinity
    flat = aff**0.3
    fav_cat = _draw_products(rng, persona, flat / flat.sum(axis=1, keepdims=True))
    consents = _draw_consents(rng, persona, signup_day, cal)
    design = _draw_design(rng, persona, signup_day, consents, cal)
    orders = _draw_orders(rng, persona, signup_day, design, cal, catalog, pweights, fav_cat)

    # --- campaign truth (potential outcomes are known for every eligible user)
    o_user, o_ts, is_camp = orders.o_user, orders.o_ts, orders.is_camp
    in_win = (o_ts >= design.sent_ts) & (o_ts < design.win_end_ts) & (orders.state == 0) & ~is_camp
    conv0 = np.bincount(o_user[in_win], minlength=n_users) > 0
    camp_rev = np.bincount(
        o_user[is_camp], weights=orders.total[is_camp] / 100.0, minlength=n_users
    )
    gain = design.responds & ~conv0  # conversion under treatment minus under control

    events = _draw_user_events(rng, persona, signup_day, orders.hi, design, cal, aff)
    ev_lines = _event_lines(rng, events, persona, cid, cal, catalog, pweights, aff)
    o_cols, l_cols, n_lines_per_order = _order_tables(orders, catalog, cid)

    defects: dict[str, int] | None = None
    age_col: pd.Series | np.ndarray = users["age"].to_numpy()
    if dirty:
        perm = orders.perm
        defects, o_cols, age_col = _inject_defects(
            rng, o_cols, users["age"].to_numpy(), n_lines_per_order, is_camp[perm],
            (o_ts[perm] >= design.sent_ts) & (o_ts[perm] < design.win_end_ts), n_users,
        )  # fmt: skip
    users = users.assign(age=age_col)

    # --- write
    written = _Written(out)
    _write_csv(users, written.record("exports/customers.csv", len(users)))
    _write_csv(catalog.frame, written.record("exports/products.csv", len(catalog.frame)))
    n_lines = _write_orders(written, o_cols, l_cols, dirty=dirty)
    _write_jsonl_gz(ev_lines, written.record("exports/events.jsonl.gz", ev_lines.size))
    _write_consents(written, users, cid, consents)
    sent_str = _write_campaign(written, cid, design)
    # active_until: the last day (shop time) of each customer's organic buying window, the
    # truth of who has churned (campaign-driven orders may still fall after it)
    active_until = cal.start_day + orders.hi.astype("timedelta64[D]")
    truth_personas = pa.table(
        {"customer_id": pa.array(cid, pa.string()),
         "persona": pa.array(_pick([p.name for p in PERSONAS], persona), pa.string()),
         "active_until": pa.array(active_until, pa.date32())}
    )  # fmt: skip
    _write_parquet(truth_personas, written.record("truth/personas.parquet", n_users))

    truth = _truth(
        seed=seed, n_users=n_users, end=end_ts, cal=cal, persona=persona, aff=aff,
        sent=sent_str, treated=design.treated, eligible=design.eligible,
        responds=design.responds, gain=gain, conv0=conv0, camp_rev=camp_rev,
        defects=defects, dirty=dirty,
    )  # fmt: skip
    tp = out / "truth" / "truth.json"
    tp.write_text(json.dumps(truth, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    written.paths["truth/truth.json"] = tp
    yp = out / "segmint.yaml"
    yp.write_text(YAML_TEXT, encoding="utf-8")
    written.paths["segmint.yaml"] = yp

    log.info(
        "demo written to %s: %d users, %d orders, %d lines, %d events in %.1fs",
        out, n_users, orders.n_orders, n_lines, ev_lines.size, time.perf_counter() - t0,
    )  # fmt: skip
    return DemoSummary(
        out_dir=out,
        paths=tuple(sorted(written.paths.values())),
        row_counts=dict(sorted(written.rows.items())),
        defects=defects,
    )


def _inject_defects(
    rng: np.random.Generator,
    o_cols: dict[str, np.ndarray],
    age: np.ndarray,
    n_lines_per_order: np.ndarray,
    is_camp: np.ndarray,
    in_campaign_window: np.ndarray,
    n_users: int,
) -> tuple[dict[str, int], dict[str, np.ndarray], pd.Series]:
    """Corrupt copies of the clean orders and ages; each defect on its own row."""
    n = o_cols["order_no"].size
    sizes = {
        "negative_amount": max(1, round(0.002 * n)),
        "duplicate_order_rows": max(1, round(0.003 * n)),
        "malformed_order_ts": max(1, round(0.001 * n)),
        "unknown_customer": max(1, round(0.002 * n)),
        "outlier_amount": max(1, round(0.0005 * n)),
    }
    # campaign-window orders stay clean so that the campaign truth holds after cleaning
    cand = np.flatnonzero(~is_camp & ~in_campaign_window)
    picked = rng.choice(cand, size=sum(sizes.values()), replace=False)
    sel: dict[str, np.ndarray] = {}
    at = 0
    for k, s in sizes.items():
        sel[k] = np.sort(picked[at : at + s])
        at += s

    cols = {k: v.copy() for k, v in o_cols.items()}
    ts = _fmt_ts(cols["order_ts"], "%Y-%m-%d %H:%M:%S")
    m = sel["malformed_order_ts"]
    ts[m] = _pick(V.MALFORMED_TIMESTAMPS, rng.integers(0, len(V.MALFORMED_TIMESTAMPS), m.size))
    cols["order_ts"] = ts
    cols["total"][sel["negative_amount"]] *= -1.0
    m = sel["outlier_amount"]
    cols["total"][m] = np.round(rng.uniform(25_000, 300_000, m.size), 2)
    m = sel["unknown_customer"]
    cols["customer"][m] = _ids("C", n_users + 1 + rng.integers(0, 10 * n_users, m.size), 6)
    # exact duplicates: repeat the chosen rows, keep the file sorted by order number
    reps = np.ones(n, dtype=np.int64)
    reps[sel["duplicate_order_rows"]] = 2
    idx = np.repeat(np.arange(n), reps)
    cols = {k: v[idx] for k, v in cols.items()}

    n_users_total = age.size
    n_missing = max(1, round(0.03 * n_users_total))
    miss = rng.choice(n_users_total, size=n_missing, replace=False)
    age_s = pd.Series(age, dtype="Int64")
    age_s.iloc[np.sort(miss)] = pd.NA

    rejected = ("negative_amount", "malformed_order_ts", "unknown_customer", "outlier_amount")
    by_defect = {k: int(n_lines_per_order[sel[k]].sum()) for k in rejected}
    defects = {"missing_age": int(n_missing), **{k: int(v) for k, v in sizes.items()}}
    defects["order_lines_of_rejected_orders"] = int(sum(by_defect.values()))
    defects.update({f"order_lines_of_{k}_orders": v for k, v in by_defect.items()})
    return defects, cols, age_s


def _true_effect(
    mask: np.ndarray,
    treated: np.ndarray,
    eligible: np.ndarray,
    gain: np.ndarray,
    conv0: np.ndarray,
    camp_rev: np.ndarray,
) -> dict[str, object]:
    """The campaign's true effect on the treated users of ``mask``."""
    t = mask & treated
    nt = int(t.sum())
    return {
        "n_eligible": int((mask & eligible).sum()),
        "n_treatment": nt,
        "n_control": int((mask & eligible & ~treated).sum()),
        "design_response_probability": None,
        "conversion_lift": round(float(gain[t].mean()), 6) if nt else None,
        "baseline_conversion_treated_without_campaign": (
            round(float(conv0[t].mean()), 6) if nt else None
        ),
        "incremental_revenue_per_treated_user": (
            round(float(camp_rev[t].sum() / nt), 4) if nt else None
        ),
    }


def _persona_truth(i: int, p: _Persona, n: int, n_users: int, aff: np.ndarray) -> dict[str, object]:
    """What was planted for persona ``i`` and how many users it got."""
    return {
        "name": p.name,
        "target_share": p.share,
        "n_users": n,
        "share": round(float(n / n_users), 6),
        "top_categories": list(p.top_cats),
        "category_affinity": {c: round(float(aff[i, j]), 6) for j, c in enumerate(CATS)},
        "order_channels": dict(zip(ORDER_CHANNELS, p.channels, strict=True)),
        "event_sources": dict(zip(EVENT_SOURCES, p.sources, strict=True)),
        "mean_events": p.events,
    }


def _truth(
    *,
    seed: int,
    n_users: int,
    end: pd.Timestamp,
    cal: _Calendar,
    persona: np.ndarray,
    aff: np.ndarray,
    sent: str,
    treated: np.ndarray,
    eligible: np.ndarray,
    responds: np.ndarray,
    gain: np.ndarray,
    conv0: np.ndarray,
    camp_rev: np.ndarray,
    defects: dict[str, int] | None,
    dirty: bool,
) -> dict[str, object]:
    def effect(mask: np.ndarray) -> dict[str, object]:
        return _true_effect(mask, treated, eligible, gain, conv0, camp_rev)

    by_persona = {}
    for i, p in enumerate(PERSONAS):
        e = effect(persona == i)
        e["design_response_probability"] = p.lift
        by_persona[p.name] = e
    overall = effect(np.ones(n_users, dtype=bool))
    del overall["design_response_probability"]
    counts = np.bincount(persona, minlength=len(PERSONAS))
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_users": n_users,
        "start": str(cal.start_day),
        "end": str(end.date()),
        "timezone": "Europe/Berlin",
        "dirty": dirty,
        "categories": list(CATS),
        "personas": [
            _persona_truth(i, p, int(counts[i]), n_users, aff) for i, p in enumerate(PERSONAS)
        ],
        "campaign": {
            "name": CAMPAIGN_NAME,
            "file": f"campaigns/{CAMPAIGN_NAME}.csv",
            "sent_at": sent,
            "window_days": CAMPAIGN_WINDOW_DAYS,
            "control_share": CAMPAIGN_CONTROL_SHARE,
            "definition": (
                "conversion = at least one 'paid' order with sent_at <= order_ts < "
                "sent_at + window_days (shop local time); effects are the sample average "
                "treatment effect on the treated (known potential outcomes): "
                "conversion_lift is the absolute lift in conversion probability and "
                "incremental_revenue_per_treated_user the extra paid order revenue (EUR, "
                "net of discount) per treated user. Campaign orders carry a 15% discount."
            ),
            "overall": overall,
            "by_persona": by_persona,
        },
        "defects": defects,
    }
