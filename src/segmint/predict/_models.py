"""The buy-till-you-die models, fitted by maximum likelihood with scipy, vectorised.

- :class:`BetaGeo`: BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way"): purchases while alive are Poisson(λ), λ ~ Gamma(r, α) across customers; after each
  purchase a customer drops out with probability p, p ~ Beta(a, b).
- :class:`ModifiedBetaGeo`: MBG/NBD (Batislam, Denizel & Filiztekin 2007): a customer may
  also drop out at time zero, so someone with no repeat purchase is not assumed alive.
- :class:`GammaGamma`: spend per order (Fader, Hardie & Lee 2005, "The Gamma-Gamma model
  of monetary value"): a customer's order values are Gamma(p, ν), ν ~ Gamma(q, v).

Inputs follow the papers: ``x`` repeat purchases (purchase periods after the first),
``t_x`` the time of the last purchase and ``T`` the age, both since the first purchase, in
any time unit (segmint uses days; CDNOW's published figures are in weeks). Identical
customers are fitted once with a weight, and every term that depends on ``x`` alone is
computed once per distinct ``x``: a million customers cost a few thousand distinct rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special, stats
from threadpoolctl import threadpool_limits

from segmint.errors import ConfigError


def _compress(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of the stacked columns (sorted), their counts and each input row's
    position: ``np.unique(axis=0)``'s answer from a lexsort, three times faster on a
    million rows."""
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    if len(stacked) == 0:
        return stacked, np.zeros(0), np.zeros(0, dtype=np.intp)
    order = np.lexsort(stacked.T[::-1])
    ordered = stacked[order]
    new = np.empty(len(ordered), dtype=bool)
    new[0] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=new[1:])
    group = np.cumsum(new) - 1
    inverse = np.empty(len(ordered), dtype=np.intp)
    inverse[order] = group
    return ordered[new], np.bincount(group).astype(float), inverse


def _distinct_x(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``x`` and each row's position among them."""
    ux, inv = np.unique(x, return_inverse=True)
    return ux, inv.reshape(-1)


def _by_x(distinct: tuple[np.ndarray, np.ndarray], fn: Any) -> np.ndarray:
    """``fn`` evaluated once per distinct ``x`` (from :func:`_distinct_x`, computed once
    per fit) and spread back: x holds few values."""
    ux, inv = distinct
    return np.asarray(fn(ux))[inv]


def _one_minus_tail(
    z: np.ndarray,
    printed: tuple[Any, Any, Any, Any],
    euler: tuple[Any, Any, Any, Any],
) -> np.ndarray:
    """``1 - (1-z)^k · 2F1(A, B; C; z)`` for the printed ``(A, B, C, k)``, in logs.

    Where that 2F1 overflows (many purchases and a long horizon: it passes 1e308 while
    ``(1-z)^k`` underflows), the same value from ``euler``, the parameters of Euler's
    transformation ``2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z)``, whose 2F1 stays
    small for any number of purchases (but itself overflows for very large a, b: hence
    the printed form first)."""
    z = np.asarray(z, dtype=float)
    log1mz = np.log1p(-z)

    def tail(params: tuple[Any, Any, Any, Any], where: Any) -> tuple[np.ndarray, np.ndarray]:
        A, B, C, k = (np.broadcast_to(v, z.shape)[where] for v in params)
        h = special.hyp2f1(A, B, C, z[where])
        # 2F1 is negative where C < 0 (a + b < 1 with few purchases): keep its sign apart
        return np.sign(h), np.log(np.abs(h)) + k * log1mz[where]

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        everywhere = np.ones(z.shape, dtype=bool)
        sign, log_tail = tail(printed, everywhere)
        bad = np.isnan(log_tail) | np.isinf(log_tail) & (log_tail > 0) | np.isnan(sign)
        if bad.any():
            sign[bad], log_tail[bad] = tail(euler, bad)
        # 1 - sign·e^log_tail, with expm1 where the tail is positive (precise near 1)
        out = np.where(sign >= 0, -np.expm1(log_tail), 1.0 + np.exp(log_tail))
    return np.asarray(out)


def _check_summary(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if len(x) == 0:
        raise ConfigError("no customer to fit: the summary is empty (no completed orders?)")
    bad = (x < 0) | (t_x < 0) | (t_x > T) | ~np.isfinite(x) | ~np.isfinite(t_x) | ~np.isfinite(T)
    if bad.any():
        raise ConfigError(
            f"{int(bad.sum())} customers have an impossible summary (x < 0, t_x < 0 or "
            "T < t_x): the as-of date must come after every purchase counted"
        )
    if ((x == 0) & (t_x != 0)).any():
        raise ConfigError("customers with no repeat purchase must have t_x = 0")


@dataclass
class Fit:
    """A maximum-likelihood fit: parameters, their standard errors and 95 % intervals
    (from the observed information, on the log scale), the log-likelihood."""

    params: dict[str, float]
    std_errors: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    log_likelihood: float
    n: int
    iterations: int
    converged: bool
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "std_errors": self.std_errors,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "log_likelihood": self.log_likelihood,
            "n": self.n,
            "iterations": self.iterations,
            "converged": self.converged,
            "message": self.message,
        }


def _hessian(f: Any, z: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of ``f`` at ``z``."""
    k = len(z)
    H = np.empty((k, k))
    f0 = f(z)
    for i in range(k):
        for j in range(i, k):
            if i == j:
                e = np.zeros(k)
                e[i] = h
                H[i, i] = (f(z + e) - 2 * f0 + f(z - e)) / h**2
            else:
                ei, ej = np.zeros(k), np.zeros(k)
                ei[i], ej[j] = h, h
                H[i, j] = H[j, i] = (
                    f(z + ei + ej) - f(z + ei - ej) - f(z - ei + ej) + f(z - ei - ej)
                ) / (4 * h**2)
    return H


def _mle(
    names: tuple[str, ...],
    negll: Any,
    start: np.ndarray,
    n: int,
    scale: dict[str, float] | None = None,
    ll_offset: float = 0.0,
) -> Fit:
    """Minimise the total negative log-likelihood over log-parameters (L-BFGS-B), then
    standard errors from the inverse Hessian at the optimum (delta method: se(θ) = θ·se(log θ)).

    ``scale`` divides a fitted parameter back (a time-scale parameter fitted on rescaled
    times); ``ll_offset`` is added to the reported log-likelihood to express it in the
    caller's units again (the Jacobian of that rescaling)."""
    scale = scale or {}
    # one BLAS thread: L-BFGS-B's few-parameter BLAS calls cost milliseconds each when
    # OpenBLAS wakes its threads (8 ms a step on a busy 2-core machine, against 20 µs)
    with threadpool_limits(limits=1, user_api="blas"):
        res = optimize.minimize(
            lambda z: negll(z) / n,
            start,
            method="L-BFGS-B",
            bounds=[(-20.0, 20.0)] * len(start),
            options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
        )
    z = np.asarray(res.x, dtype=float)
    params = {k: float(np.exp(v)) / scale.get(k, 1.0) for k, v in zip(names, z, strict=True)}
    try:
        cov = np.linalg.inv(_hessian(negll, z))
        se_log = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se_log = np.full(len(z), np.nan)
    std_errors = {k: float(params[k] * s) for k, s in zip(names, se_log, strict=True)}
    intervals = {
        k: (float(params[k] * np.exp(-1.96 * s)), float(params[k] * np.exp(1.96 * s)))
        for k, s in zip(names, se_log, strict=True)
    }
    return Fit(
        params=params,
        std_errors=std_errors,
        intervals=intervals,
        log_likelihood=float(-res.fun * n + ll_offset),
        n=n,
        iterations=int(res.nit),
        converged=bool(res.success),
        message=str(res.message),
    )


class _BuyTillYouDie(ABC):
    """What BG/NBD and MBG/NBD share: fitting, the compressed summary, and the CLV sum."""

    name = ""
    #: x -> the x-only terms of the log-likelihood, given (r, a, b)
    fit_: Fit | None

    def __init__(self) -> None:
        self.fit_ = None

    # -- each model's own (abstract: BetaGeo and ModifiedBetaGeo provide them) ---------
    @abstractmethod
    def _loglik(
        self,
        z: np.ndarray,
        x: np.ndarray,
        t_x: np.ndarray,
        T: np.ndarray,
        distinct: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Each row's log-likelihood at log-parameters ``z`` (``distinct``: x's values)."""

    @abstractmethod
    def _log_odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """log(P(dropped out) / P(alive)) given the history."""

    @abstractmethod
    def _first(self, x: np.ndarray) -> np.ndarray:
        """The factor of the conditional expectation before its hypergeometric bracket."""

    @abstractmethod
    def _bracket(self, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """The hypergeometric bracket of the conditional expectation (depends on x, T)."""

    # -- shared ------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, float]:
        if self.fit_ is None:
            raise ConfigError(f"the {self.name} model is not fitted yet: call fit() first")
        return self.fit_.params

    def fit(self, x: Any, t_x: Any, T: Any, *, weights: Any = None) -> _BuyTillYouDie:
        """Fit r, α, a, b by maximum likelihood.

        Parameters
        ----------
        x, t_x, T : array-like
            Repeat purchases, time of the last purchase and age (same unit), per customer
            (or per group of identical customers with ``weights``).
        weights : array-like, optional
            How many customers each row stands for.
        """
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        _check_summary(x, t_x, T)
        if weights is not None:
            rows, counts = np.column_stack([x, t_x, T]), np.asarray(weights, dtype=float)
        else:
            rows, counts, _ = _compress(x, t_x, T)
        # times rescaled so that the oldest customer is 10 units old: α stays near 1
        s = 10.0 / float(rows[:, 2].max() or 1.0)
        cx, ctx, cT = rows[:, 0], rows[:, 1] * s, rows[:, 2] * s
        n = float(counts.sum())
        distinct = _distinct_x(cx)

        def negll(z: np.ndarray) -> float:
            ll = self._loglik(z, cx, ctx, cT, distinct)
            return float(-(counts * ll).sum())

        # the likelihood is a density in the purchase times (λ^x): rescaling times by s
        # shifts it by sum(x)·ln(s), added back so that it is in the caller's unit
        # (CDNOW in weeks: -9582.4, as published)
        offset = float((counts * cx).sum()) * float(np.log(s))
        self.fit_ = _mle(("r", "alpha", "a", "b"), negll, np.zeros(4), int(n), {"alpha": s}, offset)
        return self

    def _cached_conditional(
        self, horizons: list[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> list[np.ndarray]:
        """Expected purchases in (T, T + t] for each t of ``horizons``, computed on the
        distinct (x, t_x, T) rows only, the hypergeometric part on distinct (x, T)."""
        rows, _, inv = _compress(x, t_x, T)
        rx, rtx, rT = rows[:, 0], rows[:, 1], rows[:, 2]
        keys, _, key_of = _compress(rx, rT)
        scale = self._first(rx) * special.expit(-self._log_odds_dead(rx, rtx, rT))
        # never below 0 (rounding at a tiny t), and no -0.0 (+ 0.0)
        return [
            np.maximum(scale * self._bracket(t, keys[:, 0], keys[:, 1])[key_of], 0.0)[inv] + 0.0
            for t in horizons
        ]

    def p_alive(self, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """P(alive at T | x, t_x, T): the probability that the customer has not dropped out
        (1 under BG/NBD for a customer without a repeat purchase, below 1 under MBG/NBD)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        return np.asarray(special.expit(-self._log_odds_dead(x, t_x, T)))

    def expected_purchases(self, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """Expected purchases in the next ``t`` time units, per customer (conditional on
        their history: Fader, Hardie & Lee 2005, eq. 10)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        return self._cached_conditional([float(t)], x, t_x, T)[0]

    def clv(
        self,
        x: Any,
        t_x: Any,
        T: Any,
        order_value: Any,
        *,
        horizon: float = 365.0,
        period: float = 30.0,
        discount_rate: float = 0.10,
        margin: float = 1.0,
        year: float = 365.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Customer lifetime value over ``horizon`` and the expected purchases in it.

        The horizon is cut into periods of ``period`` units; each period's expected
        purchases (the difference of the conditional expectations at its ends) times the
        expected order value times ``margin``, discounted at ``discount_rate`` a year
        (``year`` units), summed: the discounted-cash-flow CLV of the ``lifetimes``
        package, vectorised.
        """
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        value = np.asarray(order_value, dtype=float) * margin
        # period ends before the horizon, then the horizon itself (a shorter last period;
        # one period when the horizon is shorter than a period)
        ends = [float(e) for e in np.arange(period, horizon, period) if e < horizon - 1e-9]
        ends.append(float(horizon))
        expected = self._cached_conditional(ends, x, t_x, T)
        total = np.zeros(len(x))
        previous = np.zeros(len(x))
        for end, cum in zip(ends, expected, strict=True):
            total += (cum - previous) * value / (1.0 + discount_rate) ** (end / year)
            previous = cum
        return total, expected[-1]


def _count_terms(
    distinct: tuple[np.ndarray, np.ndarray],
    r: float,
    alpha: float,
    a: float,
    b: float,
    *,
    shift: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The log-likelihood terms that depend on x alone (once per distinct x): the NBD part
    ln Γ(r+x) − ln Γ(r) + r ln α and the beta part ln B(a, b+x+shift) − ln B(a, b) (shift 0
    for BG/NBD, 1 for MBG/NBD, whose customers may also drop out at time zero)."""
    a1 = _by_x(distinct, lambda u: special.gammaln(r + u) - special.gammaln(r)) + r * np.log(alpha)
    a2 = _by_x(
        distinct,
        lambda u: (
            special.gammaln(a + b)
            + special.gammaln(b + u + shift)
            - special.gammaln(b)
            - special.gammaln(a + b + u + shift)
        ),
    )
    return a1, a2


class BetaGeo(_BuyTillYouDie):
    """BG/NBD (Fader, Hardie & Lee 2005).

    Examples
    --------
    >>> m = BetaGeo().fit(summary.x, summary.t_x, summary.T)   # doctest: +SKIP
    >>> m.params                                                 # doctest: +SKIP
    {'r': 0.243, 'alpha': 4.414, 'a': 0.793, 'b': 2.426}
    """

    name = "bgnbd"

    def _loglik(
        self,
        z: np.ndarray,
        x: np.ndarray,
        t_x: np.ndarray,
        T: np.ndarray,
        distinct: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        r, alpha, a, b = np.exp(z)
        a1, a2 = _count_terms(distinct, r, alpha, a, b, shift=0.0)
        a3 = -(r + x) * np.log(alpha + T)
        repeat = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(
                repeat,
                np.log(a)
                - np.log(np.where(repeat, b + x - 1, 1.0))
                - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        return a1 + a2 + np.logaddexp(a3, a4)

    def _log_odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = (self.params[k] for k in ("r", "alpha", "a", "b"))
        repeat = x > 0
        log_odds = (
            np.log(a)
            - np.log(np.where(repeat, b + x - 1, 1.0))
            + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
        return np.where(repeat, log_odds, -np.inf)

    def _first(self, x: np.ndarray) -> np.ndarray:
        a, b = self.params["a"], self.params["b"]
        return (a + b + x - 1) / (a - 1)

    def _bracket(self, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        # eq. 10: 1 - ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z), z = t/(α+T+t)
        # (1 - z = (α+T)/(α+T+t)); by Euler: 1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)
        r, alpha, a, b = (self.params[k] for k in ("r", "alpha", "a", "b"))
        z = t / (alpha + T + t)
        return _one_minus_tail(
            z, (r + x, b + x, a + b + x - 1, r + x), (a + b - 1 - r, a - 1, a + b + x - 1, a - 1)
        )


class ModifiedBetaGeo(_BuyTillYouDie):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): a customer may drop out before any
    repeat purchase, so P(alive) is below 1 for one-time buyers too."""

    name = "mbgnbd"

    def _loglik(
        self,
        z: np.ndarray,
        x: np.ndarray,
        t_x: np.ndarray,
        T: np.ndarray,
        distinct: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        r, alpha, a, b = np.exp(z)
        a1, a2 = _count_terms(distinct, r, alpha, a, b, shift=1.0)
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return a1 + a2 + a3 + np.logaddexp(a4, 0.0)

    def _log_odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = (self.params[k] for k in ("r", "alpha", "a", "b"))
        return np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))

    def _first(self, x: np.ndarray) -> np.ndarray:
        a, b = self.params["a"], self.params["b"]
        return (a + b + x) / (a - 1)

    def _bracket(self, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        # 1 - ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; z); by Euler's transformation
        # 1 - (1-z)^(a-1) 2F1(a+b-r, a-1; a+b+x; z)
        r, alpha, a, b = (self.params[k] for k in ("r", "alpha", "a", "b"))
        z = t / (alpha + T + t)
        return _one_minus_tail(
            z, (r + x, b + x + 1, a + b + x, r + x), (a + b - r, a - 1, a + b + x, a - 1)
        )


PURCHASE_MODELS: dict[str, type[_BuyTillYouDie]] = {"bgnbd": BetaGeo, "mbgnbd": ModifiedBetaGeo}


@dataclass
class GammaGamma:
    """The Gamma-Gamma model of spend per order, fitted on repeat buyers (x > 0) and
    their mean repeat-order value ``m``.

    The posterior of a customer's mean order value is ``p / ν`` with
    ``ν ~ Gamma(q + p·x, rate v + x·m)``: :meth:`order_value` gives its mean, and
    :meth:`order_value_interval` its quantiles — an exact interval for each customer.
    """

    fit_: Fit | None = field(default=None)

    @property
    def params(self) -> dict[str, float]:
        if self.fit_ is None:
            raise ConfigError("the Gamma-Gamma model is not fitted yet: call fit() first")
        return self.fit_.params

    def fit(self, x: Any, m: Any) -> GammaGamma:
        """Fit p, q, v on the customers with ``x > 0`` and ``m > 0`` (others are ignored)."""
        x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
        keep = (x > 0) & (m > 0) & np.isfinite(m)
        if keep.sum() < 3:
            raise ConfigError(
                "the Gamma-Gamma spend model needs at least 3 repeat buyers with a positive "
                f"order value; found {int(keep.sum())}"
            )
        rows, counts, _ = _compress(x[keep], m[keep])
        cx, cm = rows[:, 0], rows[:, 1]
        n = float(counts.sum())
        # values rescaled to a mean of 1 (v is a money amount): the optimiser sees O(1)
        s = 1.0 / float(np.average(cm, weights=counts))
        sm = cm * s
        log_x = np.log(cx)
        log_m = np.log(sm)

        def negll(z: np.ndarray) -> float:
            p, q, v = np.exp(z)
            px = p * cx
            ll = (
                special.gammaln(px + q)
                - special.gammaln(px)
                - special.gammaln(q)
                + q * np.log(v)
                + (px - 1) * log_m
                + px * log_x
                - (px + q) * np.log(cx * sm + v)
            )
            return float(-(counts * ll).sum())

        # a density in m: rescaling values by s shifts the log-likelihood by n·ln(s)
        self.fit_ = _mle(
            ("p", "q", "v"), negll, np.zeros(3), int(n), {"v": s}, n * float(np.log(s))
        )
        return self

    def order_value(self, x: Any, m: Any) -> np.ndarray:
        """Expected value of a customer's future orders: the posterior mean, a weighted
        average of the population mean p·v/(q−1) and the customer's own mean.

        Where that mean does not exist (p·x + q ≤ 1: a fitted q below 1 says customers'
        mean spend is too spread out to have a mean, and the formula would turn negative
        for a customer with little or no repeat spend), the posterior median p / median(ν)
        instead: finite, positive and inside :meth:`order_value_interval`."""
        p, q, v = (self.params[k] for k in ("p", "q", "v"))
        x, m = np.asarray(x, dtype=float), np.nan_to_num(np.asarray(m, dtype=float))
        x = np.where(m > 0, x, 0.0)
        shape, rate = q + p * x, v + x * m
        exists = shape > 1
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = p * rate / (shape - 1)
        if exists.all():
            return np.asarray(mean)
        median = p / stats.gamma.ppf(0.5, shape, scale=1.0 / rate)
        return np.asarray(np.where(exists, mean, median))

    def order_value_interval(
        self, x: Any, m: Any, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray]:
        """A ``level`` credible interval of the customer's mean order value."""
        p, q, v = (self.params[k] for k in ("p", "q", "v"))
        x, m = np.asarray(x, dtype=float), np.nan_to_num(np.asarray(m, dtype=float))
        x = np.where(m > 0, x, 0.0)
        shape, rate = q + p * x, v + x * m
        tail = (1.0 - level) / 2
        low = p / stats.gamma.ppf(1.0 - tail, shape, scale=1.0 / rate)
        high = p / stats.gamma.ppf(tail, shape, scale=1.0 / rate)
        return low, high
