"""Explain clusters to people: rules from a shallow tree, readable names, and an assigner
that puts new users into existing segments without refitting the clustering."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from segmint.segments._evaluate import NOISE_LABEL
from segmint.segments._scaling import as_frame, auto_log1p_columns, signed_log1p

log = logging.getLogger(__name__)

__all__ = ["NAME_VOCABULARY", "SegmentAssigner", "SurrogateTree", "name_clusters"]


# --------------------------------------------------------------------------- helpers


def _frame(X: Any, names: list[str] | None = None) -> pd.DataFrame:
    frame = as_frame(X, columns=names)
    frame.columns = [str(c) for c in frame.columns]
    if names is not None:
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ValueError(
                f"column(s) {missing} were seen in fit but are missing now; "
                f"got columns {list(frame.columns)}"
            )
        frame = frame[names]
    return frame.astype(float)


def _labels(labels: Any, n_rows: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n_rows,):
        raise ValueError(
            f"labels has shape {arr.shape} but the features have {n_rows} rows; "
            "pass one label per user"
        )
    return arr


def _key(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def round_threshold(below: float, above: float) -> float:
    """The roundest number ``t`` with ``below <= t < above``.

    A tree splits at the midpoint between two neighbouring values; any ``t`` in
    ``[below, above)`` splits the training data identically, so the rule can say
    ``frequency > 8`` instead of ``frequency > 8.5`` and ``x > 5`` instead of
    ``x > 4.9987`` without changing which users it selects.
    """
    top = max(abs(below), abs(above), 1e-12)
    for power in range(int(math.floor(math.log10(top))) + 1, -13, -1):
        step = 10.0**power
        candidate = math.ceil(below / step) * step
        if power < 0:
            candidate = round(candidate, -power)
        if below <= candidate < above:
            return candidate
    return (below + above) / 2.0


def _format_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- surrogate tree


@dataclass
class _Leaf:
    label: Any
    path: list[tuple[int, bool, float, bool]]  # feature, is_upper (<=), threshold, missing here
    nodes: list[int] = field(default_factory=list)


class SurrogateTree(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A shallow decision tree that explains clusters as readable rules.

    The tree is fitted on the *unscaled* features (days, orders, money) to predict the
    cluster labels. Each leaf becomes a rule: the conditions on its path, merged per
    feature into one bound or one interval (``20 < recency_days <= 45``), with thresholds
    rounded to the roundest number that selects exactly the same training users (so
    rounding never costs fidelity). Sibling leaves that predict the same cluster are
    merged first. A cluster's rule list is the leaves that predict it, most users first;
    a cluster no leaf predicts gets an empty list (the tree is too shallow for it).

    Missing values are handled by the tree itself; when a feature had missing values in
    ``fit`` a condition says where they go, e.g. ``(recency_days > 90 or recency_days
    missing)``.

    Parameters
    ----------
    max_depth : int or None, default=None
        None: 3 for up to 4 clusters, 4 for more (a depth-3 tree has only 8 leaves).
    min_samples_leaf : int or float, default=0.01
        Smallest leaf, as a count or a share of the rows.
    random_state : int or None, default=0
    max_fit_rows : int or None, default=100_000
        The tree is fitted on a uniform sample of at most this many rows (the rules of a
        depth-3/4 tree barely change beyond it, and the fit is ~10x faster at 1M users);
        fidelity and the rule table are still measured on every row. None: all rows.

    Attributes
    ----------
    rules_ : dict
        Cluster label -> list of rules (str); a user matching any of them is predicted to
        be in that cluster.
    rule_table_ : pandas.DataFrame
        One row per rule: ``segment``, ``rule``, ``n_users`` (rows reaching the leaf),
        ``precision`` (share of them in the segment), ``recall`` (share of the segment
        covered).
    fidelity_ : float
        Accuracy of the tree on all rows given to ``fit``, in percent.
    max_depth_ : int
        Depth limit used.
    classes_ : ndarray
    estimator_ : DecisionTreeClassifier
    feature_names_in_ : ndarray of str
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        max_depth: int | None = None,
        min_samples_leaf: int | float = 0.01,
        random_state: int | None = 0,
        max_fit_rows: int | None = 100_000,
    ) -> None:
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.max_fit_rows = max_fit_rows

    def fit(self, X: Any, y: Any) -> SurrogateTree:
        """Fit the tree on unscaled features and derive the rules.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Features in original units; NaN allowed.
        y : array-like of shape (n_users,)
            Cluster labels.

        Returns
        -------
        self : SurrogateTree
        """
        frame = _frame(X)
        labels = _labels(y, frame.shape[0])
        names = list(frame.columns)
        values = frame.to_numpy()
        classes, codes = np.unique(labels, return_inverse=True)  # integer labels fit faster
        n_clusters = len(classes)
        depth = self.max_depth if self.max_depth is not None else (3 if n_clusters <= 4 else 4)
        fit_rows = np.arange(len(codes))
        if self.max_fit_rows is not None and len(codes) > self.max_fit_rows:
            rng = np.random.default_rng(self.random_state)
            fit_rows = np.sort(rng.choice(len(codes), self.max_fit_rows, replace=False))
        tree = DecisionTreeClassifier(
            max_depth=depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        ).fit(values[fit_rows], codes[fit_rows])
        self.estimator_ = tree
        self.max_depth_ = int(depth)
        self.classes_ = classes
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        predicted = classes[np.asarray(tree.predict(values), dtype=np.intp)]
        self.fidelity_ = float(100.0 * np.mean(predicted == labels))

        leaves = self._leaves(tree, classes[np.asarray(tree.classes_, dtype=np.intp)])
        has_missing = np.isnan(values).any(axis=0)
        uniques = [np.unique(col[~np.isnan(col)]) for col in values.T]
        node_of_row = tree.apply(values)
        rows = []
        for leaf in leaves:
            text = self._rule_text(leaf.path, names, uniques, has_missing)
            reached = np.isin(node_of_row, leaf.nodes)
            in_segment = labels == leaf.label
            n_reached = int(reached.sum())
            rows.append(
                {
                    "segment": _key(leaf.label),
                    "rule": text,
                    "n_users": n_reached,
                    "precision": float((reached & in_segment).sum() / n_reached)
                    if n_reached
                    else 0.0,
                    "recall": float((reached & in_segment).sum() / max(int(in_segment.sum()), 1)),
                }
            )
        table = pd.DataFrame(rows, columns=["segment", "rule", "n_users", "precision", "recall"])
        table = table.sort_values(["segment", "n_users"], ascending=[True, False], kind="stable")
        self.rule_table_ = table.reset_index(drop=True)
        self.rules_ = {
            _key(c): table.loc[table["segment"] == _key(c), "rule"].tolist() for c in self.classes_
        }
        log.debug("surrogate tree: %d rules, fidelity %.1f%%", len(rows), self.fidelity_)
        return self

    @staticmethod
    def _leaves(tree: DecisionTreeClassifier, classes: np.ndarray) -> list[_Leaf]:
        """Leaves after merging sibling leaves that predict the same class (``classes``:
        the label of each of the tree's classes)."""
        structure = tree.tree_
        left, right = structure.children_left, structure.children_right
        missing_left = getattr(structure, "missing_go_to_left", np.zeros(len(left), dtype=bool))

        def collapse(node: int) -> tuple[Any, list[int]] | None:
            """(label, leaf nodes) when the whole subtree predicts one class, else None."""
            if left[node] == -1:
                return classes[int(np.argmax(structure.value[node]))], [node]
            a, b = collapse(int(left[node])), collapse(int(right[node]))
            if a is not None and b is not None and a[0] == b[0]:
                return a[0], a[1] + b[1]
            return None

        out: list[_Leaf] = []

        def walk(node: int, path: list[tuple[int, bool, float, bool]]) -> None:
            whole = collapse(node)
            if whole is not None:
                out.append(_Leaf(whole[0], path, whole[1]))
                return
            feature, threshold = int(structure.feature[node]), float(structure.threshold[node])
            goes_left = bool(missing_left[node])
            walk(int(left[node]), [*path, (feature, True, threshold, goes_left)])
            walk(int(right[node]), [*path, (feature, False, threshold, not goes_left)])

        walk(0, [])
        return out

    @staticmethod
    def _rule_text(
        path: list[tuple[int, bool, float, bool]],
        names: list[str],
        uniques: list[np.ndarray],
        has_missing: np.ndarray,
    ) -> str:
        bounds: dict[int, dict[str, Any]] = {}
        for feature, is_upper, threshold, missing_here in path:
            entry = bounds.setdefault(feature, {"lower": None, "upper": None, "missing": True})
            if is_upper:
                entry["upper"] = (
                    threshold if entry["upper"] is None else min(entry["upper"], threshold)
                )
            else:
                entry["lower"] = (
                    threshold if entry["lower"] is None else max(entry["lower"], threshold)
                )
            entry["missing"] = entry["missing"] and missing_here

        def nice(feature: int, threshold: float) -> str:
            values = uniques[feature]
            below = values[values <= threshold]
            above = values[values > threshold]
            if below.size and above.size:
                return _format_number(round_threshold(float(below[-1]), float(above[0])))
            return f"{threshold:.4g}"

        parts = []
        for feature, entry in bounds.items():
            name = names[feature]
            lower = None if entry["lower"] is None else nice(feature, entry["lower"])
            upper = None if entry["upper"] is None else nice(feature, entry["upper"])
            if lower is not None and upper is not None:
                text = f"{lower} < {name} <= {upper}"
            elif upper is not None:
                text = f"{name} <= {upper}"
            else:
                text = f"{name} > {lower}"
            if has_missing[feature] and entry["missing"]:
                text = f"({text} or {name} missing)"
            parts.append(text)
        return " and ".join(parts) if parts else "all users"

    def predict(self, X: Any) -> np.ndarray:
        """Cluster the tree predicts for each row.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Unscaled features.

        Returns
        -------
        ndarray of shape (n_users,)
        """
        check_is_fitted(self, "rules_")
        frame = _frame(X, list(self.feature_names_in_))
        codes = np.asarray(self.estimator_.predict(frame.to_numpy()), dtype=np.intp)
        return np.asarray(self.classes_[codes])


# --------------------------------------------------------------------------- assigner


class SegmentAssigner(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Put new or changed users into an existing segmentation without refitting it.

    A random forest learns the segmentation from the users' features and their current
    segment; ``predict`` then assigns anyone from their features alone. Out-of-bag
    accuracy tells how faithfully it reproduces the segmentation.

    Parameters
    ----------
    n_estimators : int, default=100
    min_samples_leaf : int, default=5
    max_depth : int or None, default=None
    sample_size : int or None, default=50_000
        Users the forest is trained on (a uniform sample); None = all. Training time
        grows faster than linearly: 50,000 users x 100 trees take seconds.
    n_jobs : int or None, default=None
    random_state : int or None, default=0

    Attributes
    ----------
    oob_score_ : float
        Out-of-bag accuracy (0..1) on the training users.
    feature_importances_ : pandas.Series
        Impurity importance per feature, largest first; sums to 1.
    classes_ : ndarray
    estimator_ : RandomForestClassifier
    feature_names_in_ : ndarray of str
    n_features_in_ : int
    n_training_rows_ : int
    """

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        min_samples_leaf: int = 5,
        max_depth: int | None = None,
        sample_size: int | None = 50_000,
        n_jobs: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.sample_size = sample_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> SegmentAssigner:
        """Learn the segmentation.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Features (scaled or not; NaN allowed).
        y : array-like of shape (n_users,)
            Segment of each user.

        Returns
        -------
        self : SegmentAssigner
        """
        frame = _frame(X)
        labels = _labels(y, frame.shape[0])
        values = frame.to_numpy()
        if self.sample_size is not None and values.shape[0] > self.sample_size:
            rng = np.random.default_rng(self.random_state)
            idx = np.sort(rng.choice(values.shape[0], self.sample_size, replace=False))
            values, labels = values[idx], labels[idx]
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            oob_score=True,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        ).fit(values, labels)
        names = list(frame.columns)
        self.estimator_ = forest
        self.classes_ = forest.classes_
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.n_training_rows_ = int(values.shape[0])
        self.oob_score_ = float(forest.oob_score_)
        self.feature_importances_ = pd.Series(
            forest.feature_importances_, index=names, name="importance"
        ).sort_values(ascending=False, kind="stable")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Segment of each user.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            The features seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_users,)
        """
        check_is_fitted(self, "estimator_")
        frame = _frame(X, list(self.feature_names_in_))
        return np.asarray(self.estimator_.predict(frame.to_numpy()))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Share of trees voting for each segment (columns in ``classes_`` order).

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)

        Returns
        -------
        ndarray of shape (n_users, n_classes)
        """
        check_is_fitted(self, "estimator_")
        frame = _frame(X, list(self.feature_names_in_))
        return np.asarray(self.estimator_.predict_proba(frame.to_numpy()))


# --------------------------------------------------------------------------- names

#: Known features and the word for a cluster well below / above the population.
NAME_VOCABULARY: tuple[tuple[str, str | None, str | None], ...] = (
    ("recency_days", "Recent", "Lapsed"),
    ("frequency", "one-off", "frequent"),
    ("monetary", "low spend", "high spend"),
    ("avg_order_value", "small baskets", "big baskets"),
    ("mean_days_between_orders", "quick reorders", "long gaps between orders"),
    ("discount_share", None, "discount-driven"),
    ("events_30d", None, "engaged"),
    ("app_share", None, "app-first"),
    ("offline_share", None, "in-store"),
    ("tenure_days", "new", "long-standing"),
)

_BROWSERS = "browsers"  # events_30d high and frequency low
_NO_ORDERS = "no orders"  # frequency: the median member never ordered

#: A feature is used for a cluster's name only when at least this share of its members
#: has an observed (not missing, not imputed) value.
MIN_OBSERVED_SHARE = 0.5


@dataclass(frozen=True)
class _Stat:
    """One feature of one cluster, on observed values only."""

    effect: float  # standardised difference of the medians (see _effects)
    median: float
    population_median: float
    population_p25: float
    population_p75: float
    observed_share: float


def _effects(frame: pd.DataFrame, labels: np.ndarray) -> dict[Any, dict[str, _Stat]]:
    """Per cluster and feature: the median, the population's quartiles and the effect.

    Everything is computed on the observed values only (NaN = missing: never imputed). The
    effect is the standardised difference of the cluster median from the population
    median; money, count and ``*_days`` columns (all right-skewed) are compared after log1p.
    The scale is the interquartile range / 1.349 (the standard deviation of a normal
    distribution with that IQR), or the standard deviation when more than half the users
    share one value. When cluster and population medians tie (many zeros), the difference
    of means over the standard deviation ranks the feature, but a word still needs the
    medians to differ (see :func:`_word_for`).
    """
    columns = [str(c) for c in frame.columns]
    logged = set(auto_log1p_columns(columns)) | {c for c in columns if c.endswith("_days")}
    out: dict[Any, dict[str, _Stat]] = {_key(c): {} for c in np.unique(labels)}
    for column in frame.columns:
        raw = frame[column].to_numpy(dtype=float)
        values = signed_log1p(raw) if column in logged else raw
        ok = ~np.isnan(values)
        if ok.sum() < 2:
            continue
        q1, median, q3 = np.percentile(values[ok], [25, 50, 75])
        raw_q1, raw_median, raw_q3 = np.percentile(raw[ok], [25, 50, 75])
        std = float(values[ok].std())
        scale = (q3 - q1) / 1.349 if q3 > q1 else std
        if not scale > 0:
            continue
        mean = float(values[ok].mean())
        for label in np.unique(labels):
            member = labels == label
            inside = values[member & ok]
            if inside.size == 0:
                continue
            diff = float(np.median(inside)) - median
            if diff == 0.0 and std > 0:
                effect = (float(inside.mean()) - mean) / std
            else:
                effect = diff / scale
            out[_key(label)][str(column)] = _Stat(
                effect=effect,
                median=float(np.median(raw[member & ok])),
                population_median=float(raw_median),
                population_p25=float(raw_q1),
                population_p75=float(raw_q3),
                observed_share=float(inside.size / member.sum()),
            )
    return out


def _word_for(feature: str, stat: _Stat, low: str | None, high: str | None) -> str | None:
    """The word a cluster earns for one feature, or None when its median does not support it.

    The rule: a feature counts only when at least ``MIN_OBSERVED_SHARE`` of the members
    have a value; the "high" word needs the cluster median above the population median and
    at or above its 75th percentile, the "low" word below the median and at or below the
    25th percentile. ``frequency`` is stricter: "one-off" only when the median member has
    one order, "no orders" when none, "frequent" only with a median of 2 or more.
    """
    if stat.observed_share < MIN_OBSERVED_SHARE or stat.effect == 0:
        return None
    m = stat.median
    is_high = m > stat.population_median and m >= stat.population_p75
    is_low = m < stat.population_median and m <= stat.population_p25
    if feature == "frequency":
        if stat.effect < 0 and is_low:
            if abs(m - 1) < 0.5:
                return low
            return _NO_ORDERS if m < 0.5 else None
        return high if stat.effect > 0 and is_high and m >= 1.5 else None
    if stat.effect > 0 and is_high:
        return high
    if stat.effect < 0 and is_low:
        return low
    return None


def _candidates(stats: dict[str, _Stat]) -> list[tuple[float, int, str, str]]:
    """(abs effect, vocabulary position, word, feature) for one cluster, strongest first."""
    from segmint._labels import feature_label

    vocabulary = {name: (i, low, high) for i, (name, low, high) in enumerate(NAME_VOCABULARY)}
    found = []
    for feature, stat in stats.items():
        if feature in vocabulary:
            position, low, high = vocabulary[feature]
        else:
            label = feature_label(feature)
            position, low, high = len(vocabulary), f"low {label}", f"high {label}"
        word = _word_for(feature, stat, low, high)
        if word is not None:
            found.append((abs(stat.effect), position, word, feature))
    events, frequency = stats.get("events_30d"), stats.get("frequency")
    if (
        events is not None
        and frequency is not None
        and _word_for("events_30d", events, None, _BROWSERS) == _BROWSERS
        and frequency.observed_share >= MIN_OBSERVED_SHARE
        and frequency.median < frequency.population_median
    ):
        browse = min(events.effect, -frequency.effect)
        if browse > 0:
            found.append((browse, vocabulary["events_30d"][0], _BROWSERS, "events_30d"))
    found.sort(key=lambda item: (-item[0], item[1]))
    return found


def _compose(chosen: list[tuple[float, int, str, str]]) -> str:
    words = [word for _, _, word, _ in sorted(chosen, key=lambda item: item[1])]
    if _BROWSERS in words:
        words = [w for w in words if w not in ("one-off", "engaged")]
    if not words:
        return "Typical"
    name = " · ".join(dict.fromkeys(words))
    return name[0].upper() + name[1:]


def name_clusters(
    features: pd.DataFrame,
    labels: Any,
    *,
    max_terms: int = 3,
    min_effect: float = 0.3,
) -> dict[Any, str]:
    """Readable, unique names for clusters, each word true of the cluster's median member.

    For each cluster and feature the standardised difference of the cluster median from
    the population median is computed (money, counts and ``*_days`` after log1p), on the
    observed values only: pass features with missing values as NaN, never imputed ones;
    a feature most members lack does not name the cluster. The strongest ``max_terms``
    differences of at least ``min_effect`` become words from a vocabulary of known
    features (see ``NAME_VOCABULARY``): ``recency_days`` low -> "Recent", high ->
    "Lapsed"; ``frequency`` -> "frequent" / "one-off" ("no orders" at a median of 0);
    ``monetary`` -> "high spend" / "low spend"; ``avg_order_value`` -> "big baskets" /
    "small baskets"; ``discount_share`` high -> "discount-driven"; ``events_30d`` high with
    ``frequency`` low -> "browsers"; ``app_share`` high -> "app-first"; ``offline_share``
    high -> "in-store"; ``tenure_days`` low -> "new"; other numeric columns give "high x"
    / "low x" with the feature in words. A word is used only when the medians support it
    (:func:`_word_for`): "high" words need the cluster median above the population's 75th
    percentile, "low" words below its 25th; "one-off" needs a median of one order and
    "frequent" a median of at least two. Words are joined with " · " in vocabulary
    order, e.g. ``"Recent · frequent · high spend"``. A cluster with no supported
    difference is ``"Typical"``; the noise group (label -1) is ``"noise"``. When two
    clusters get the same name, each takes its next strongest word; if they still
    collide, a number is appended (``"Typical (2)"``).

    Parameters
    ----------
    features : pandas.DataFrame
        Unscaled per-user features, one row per user; NaN for missing values. Non-numeric
        columns and identifiers (``user_id``, ``*_id``) are ignored.
    labels : array-like of shape (n_users,)
        Cluster of each user.
    max_terms : int, default=3
        Words per name before disambiguation.
    min_effect : float, default=0.3
        Smallest standardised difference that earns a word.

    Returns
    -------
    dict
        Cluster label -> name.
    """
    frame = features.select_dtypes("number").astype(float)
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.drop(columns=[c for c in frame.columns if c == "user_id" or c.endswith("_id")])
    label_arr = _labels(labels, frame.shape[0])
    stats = _effects(frame, label_arr)
    clusters = [_key(c) for c in np.unique(label_arr)]
    names: dict[Any, str] = {}
    options: dict[Any, list[tuple[float, int, str, str]]] = {}
    used: dict[Any, int] = {}
    for cluster in clusters:
        if cluster == NOISE_LABEL:
            names[cluster] = "noise"
            continue
        options[cluster] = _candidates(stats.get(cluster, {}))
        strong = [c for c in options[cluster] if c[0] >= min_effect]
        used[cluster] = min(max_terms, len(strong))
        names[cluster] = _compose(options[cluster][: used[cluster]])
    _disambiguate(names, options, used)
    return _number_duplicates(names, clusters)


def _disambiguate(
    names: dict[Any, str],
    options: dict[Any, list[tuple[float, int, str, str]]],
    used: dict[Any, int],
) -> None:
    """Clusters whose names collide each add their next strongest word (in place), until
    the names differ or no colliding cluster has a word left."""
    for _ in range(len(NAME_VOCABULARY)):
        groups: dict[str, list[Any]] = {}
        for cluster in options:
            groups.setdefault(names[cluster], []).append(cluster)
        collided = [members for members in groups.values() if len(members) > 1]
        if not collided:
            break
        grew = False
        for members in collided:
            for cluster in members:
                if used[cluster] < len(options[cluster]):
                    used[cluster] += 1
                    names[cluster] = _compose(options[cluster][: used[cluster]])
                    grew = True
        if not grew:
            break


def _number_duplicates(names: dict[Any, str], clusters: list[Any]) -> dict[Any, str]:
    """Names still shared get a number from the second on (``Typical (2)``)."""
    seen: dict[str, int] = {}
    for cluster in clusters:
        name = names[cluster]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[cluster] = f"{name} ({seen[name]})"
    return names
