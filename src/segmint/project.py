"""Project: a folder with ``segmint.yaml`` and its store; the one entry point."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint.config import Config, load_config
from segmint.errors import ConfigError, NotFoundError, SegmintError
from segmint.sources import (
    LoadResult,
    check_files,
    check_source_sql,
    ingest_source,
    prefetch_checksums,
)
from segmint.store import LOAD_ORDER, TABLES, Store, lit, open_project_store

if TYPE_CHECKING:
    from segmint.config import PredictSettings
    from segmint.engines import SparkEngine
    from segmint.experiments import RefreshResult
    from segmint.features import FeatureRun
    from segmint.predict import PredictionRun
    from segmint.profiles import Persona, UserProfile
    from segmint.segments import SegmentResult

log = logging.getLogger(__name__)


def _previous_runs(store: Store, names: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Per segmentation: (its latest run, that run's feature run), or Nones if it has none."""
    from segmint.segments import list_runs

    previous: dict[str, tuple[str | None, str | None]] = {}
    for name in names:
        runs = list_runs(store, name)
        if runs.empty:
            previous[name] = (None, None)
        else:
            fr = runs["feature_run_id"].iloc[0]
            previous[name] = (
                str(runs["run_id"].iloc[0]),
                None if fr is None or fr != fr else str(fr),
            )
    return previous


def _done(results: list[LoadResult]) -> str:
    """What the sources loaded before a failure did: "orders and users were loaded and
    committed" (and which were unchanged, hence skipped)."""

    def names(rs: list[LoadResult]) -> str:
        shown = [r.source for r in rs]
        return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"

    loaded = [r for r in results if not r.skipped]
    skipped = [r for r in results if r.skipped]
    parts = []
    if loaded:
        parts.append(
            f"{names(loaded)} {'was' if len(loaded) == 1 else 'were'} loaded and committed"
        )
    if skipped:
        parts.append(
            f"{names(skipped)} {'was' if len(skipped) == 1 else 'were'} unchanged (skipped)"
        )
    return "; ".join(parts)


class Project:
    """A segmint project: its configuration and (lazily) its store.

    Parameters
    ----------
    config : Config
        The loaded configuration. Use :func:`open_project` to load it from a folder.
    read_only : bool, optional
        Open a DuckDB store read-only (beside a running ``segmint serve``, which owns the
        file). None: as :func:`segmint.store.access_mode` says (the CLI sets it per
        command), else read-write.
    store : Store, optional
        An open store to work on instead of opening one (``segmint serve`` lends the store
        it holds to a scheduled job); :meth:`close` leaves it open.
    """

    def __init__(
        self, config: Config, *, read_only: bool | None = None, store: Store | None = None
    ) -> None:
        self.config = config
        self.read_only = read_only
        self._store: Store | None = store
        self._borrowed = store is not None  # an open store lent by its owner: not closed here
        self._engine: SparkEngine | None = None

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def store(self) -> Store:
        """The store, opened (and its schema created or migrated) on first use."""
        if self._store is None:
            self._store = open_project_store(
                self.root, self.config.store_url, read_only=self.read_only
            )
        return self._store

    @property
    def engine(self) -> SparkEngine | None:
        """Where heavy work runs: None when the store computes (``engine: duckdb``), a
        :class:`~segmint.engines.SparkEngine` for ``engine: spark``."""
        from segmint.engines import engine_for

        if self._engine is None:
            self._engine = engine_for(self.config, self.root)
        return self._engine

    def ingest(
        self,
        sources: Iterable[str] | None = None,
        *,
        force: bool = False,
        now: datetime | None = None,
        callback: Callable[[str, str], None] | None = None,
    ) -> list[LoadResult]:
        """Load the named sources (default: all), in an order that satisfies references.

        Every source's file is checked first (it exists and is a regular file), so a
        wrong ``path:`` stops the run before anything is loaded. Each source is then its
        own transaction: a failure leaves the store as it was before that source, and
        raises; the error's message then names the sources committed before it, and its
        ``committed`` attribute holds their :class:`LoadResult`. A load that inserts rows
        retries, in its transaction, the rows of other sources held in the quarantine for a
        missing reference into its table; those retries are in its result's ``retries``
        (see :meth:`LoadResult.all_results`).
        """
        names = list(sources) if sources is not None else list(self.config.sources)
        for n in names:
            if n not in self.config.sources:
                known = ", ".join(self.config.sources) or "(none)"
                raise NotFoundError(f"no source named {n!r} in segmint.yaml; known: {known}")
        names.sort(key=lambda n: LOAD_ORDER.index(self.config.sources[n].table))
        check_files(self.config, names)
        check_source_sql(self.config, names)
        prefetch_checksums(self.config, names)
        results: list[LoadResult] = []
        for n in names:
            cb = (lambda stage, _n=n: callback(_n, stage)) if callback else None
            try:
                results.append(
                    ingest_source(self.store, self.config, n, force=force, now=now, callback=cb)
                )
            except SegmintError as exc:
                if results:
                    exc.args = (f"{_done(results)}; {n} failed: {exc}",)
                    exc.committed = tuple(results)
                raise
        return results

    # -- features and segments ----------------------------------------------------------
    def _as_of(self, as_of: str | date | datetime | None) -> datetime | date | None:
        value = self.config.features.as_of if as_of is None else as_of
        if isinstance(value, date | datetime):
            return value
        if value == "latest":
            return None  # compute_features uses the day after the newest order/event
        if value == "today":
            return datetime.now(UTC).date()
        try:
            return date.fromisoformat(value)
        except ValueError:
            where = "features.as_of" if as_of is None else "--as-of"  # the yaml key, or typed
            raise ConfigError(
                f"{where}: {value!r} is not 'latest', 'today' or a YYYY-MM-DD date"
            ) from None

    def compute_features(self, *, as_of: str | date | datetime | None = None) -> FeatureRun:
        """Compute and store a feature run (see :func:`segmint.features.compute_features`)."""
        from segmint.features import CustomFeature, compute_features

        custom = [
            CustomFeature(name, c.expr, c.table) for name, c in self.config.features.custom.items()
        ]
        return compute_features(
            self.store, as_of=self._as_of(as_of), custom=custom, engine=self.engine
        )

    def features(self, run_id: str | None = None) -> pd.DataFrame:
        """The features of the latest (or the given) feature run, one row per user."""
        from segmint.features import load_features

        return load_features(self.store, run_id)

    def segment(
        self,
        names: str | Iterable[str] | None = None,
        *,
        as_of: str | date | datetime | None = None,
        feature_run: FeatureRun | None = None,
        callback: Callable[[str], None] | None = None,
    ) -> SegmentResult | list[SegmentResult]:
        """Run segmentations (one name -> one result; several or all -> a list).

        A fresh feature run is computed first unless ``feature_run`` is given, so every
        segment run records the exact features it used.
        """
        from segmint.segments import run_segmentations

        run = feature_run or self.compute_features(as_of=as_of)
        single = isinstance(names, str)
        wanted = [names] if isinstance(names, str) else names
        results = run_segmentations(
            self.store,
            self.config,
            run.data,
            wanted,
            feature_run_id=run.run_id,
            as_of=run.as_of,
            callback=callback,
            engine=self.engine,
        )
        return results[0] if single else results

    def segment_runs(self, segmentation: str | None = None) -> pd.DataFrame:
        """Stored segmentation runs, newest first."""
        from segmint.segments import list_runs

        return list_runs(self.store, segmentation)

    def segment_run(self, ref: str) -> SegmentResult:
        """A stored run, by run id or by segmentation name (its latest run)."""
        from segmint.segments import load_run

        return load_run(self.store, ref)

    def assign(self, ref: str, *, feature_run: FeatureRun | None = None) -> pd.DataFrame:
        """Assign users to an existing clustering run without refitting it.

        A random forest learns the run's segments from the features it was fitted on and
        places every user of ``feature_run`` (default: a fresh feature run) — new users and
        users whose behaviour changed included.
        """
        from segmint.features import load_features
        from segmint.segments import assign_segments

        run = self.segment_run(ref)
        columns = run.params.get("features")
        if not columns or run.feature_run_id is None:
            raise ConfigError(
                f"run {run.run_id} ({run.method}) is not a clustering run; rule-based "
                "segmentations assign new users by running them again"
            )
        trained_on = load_features(self.store, run.feature_run_id)
        new = feature_run.data if feature_run is not None else self.compute_features().data
        return assign_segments(trained_on, run.assignments, new, list(columns))

    def segments_diff(self, run_a: str, run_b: str) -> pd.DataFrame:
        """Migration matrix between two runs (users from segment in A to segment in B)."""
        from segmint.segments import diff_runs

        return diff_runs(self.store, run_a, run_b)

    # -- customer value and churn --------------------------------------------------------
    def _predict_settings(self, overrides: dict[str, Any]) -> PredictSettings:
        """``predict:`` of segmint.yaml with ``overrides`` (None values ignored), checked."""
        from pydantic import ValidationError

        from segmint.config import PredictSettings

        settings = self.config.predict
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return settings
        known = list(PredictSettings.model_fields)
        for key in given:
            if key not in known:
                close = get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"predict: no setting {key!r}; {hint}known: {', '.join(known)}")
        try:
            return PredictSettings.model_validate({**settings.model_dump(), **given})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(
                f"predict.{where}: {first['msg']} (got {first['input']!r}); see the predict: "
                "keys in docs/configuration.md"
            ) from None

    def predict_clv(
        self, as_of: str | date | datetime | None = None, **overrides: Any
    ) -> PredictionRun:
        """Fit BG/NBD (or MBG/NBD) and Gamma-Gamma on the completed orders before ``as_of``
        and store a ``clv`` run (see :func:`segmint.predict.predict_clv`).

        Parameters
        ----------
        as_of : date, datetime or str, optional
            ``"latest"`` (the day after the newest activity), ``"today"`` or a date; the
            config's ``features.as_of`` by default.
        **overrides
            Keys of the ``predict:`` section for this run only (``model="mbgnbd"``,
            ``horizon_days=180``, ...); None leaves a key as configured.
        """
        from segmint.predict import predict_clv

        settings = self._predict_settings(overrides)
        return predict_clv(self.store, settings, as_of=self._as_of(as_of))

    def predict_churn(
        self, as_of: str | date | datetime | None = None, **overrides: Any
    ) -> PredictionRun:
        """Train the churn model on earlier cut-offs, check it on a later one and store a
        ``churn`` run of every customer's risk of no completed order in the ``churn_days``
        after ``as_of`` (see :func:`segmint.predict.predict_churn`). ``as_of`` and
        ``overrides`` as in :meth:`predict_clv` (``churn_days=60``, ...)."""
        settings = self._predict_settings(overrides)  # checked before the model loads
        from segmint.features import CustomFeature
        from segmint.predict import predict_churn

        custom = [
            CustomFeature(name, c.expr, c.table) for name, c in self.config.features.custom.items()
        ]
        return predict_churn(self.store, settings, as_of=self._as_of(as_of), custom=custom)

    def prediction_runs(self, kind: str | None = None) -> pd.DataFrame:
        """Stored prediction runs (``clv``, ``churn`` or both), newest first: run_id, kind,
        created_at, as_of, n_users."""
        from segmint.predict import VALUE_COLUMNS, list_prediction_runs

        if kind is not None and kind not in VALUE_COLUMNS:
            raise ConfigError(f"no kind of prediction {kind!r}; kinds: {', '.join(VALUE_COLUMNS)}")
        return list_prediction_runs(self.store, kind)

    def prediction_run(self, ref: str) -> PredictionRun:
        """A stored prediction run: by run id (or its unique start), or ``clv`` / ``churn``
        for the latest run of that kind."""
        from segmint.predict import load_prediction_run

        return load_prediction_run(self.store, ref)

    def predictions(self) -> pd.DataFrame:
        """Every user's latest predictions, one row per user: ``user_id``, P(alive),
        expected purchases and order value, CLV and its interval (latest ``clv`` run) and
        churn risk (latest ``churn`` run); missing where a kind has no run or the user is
        not in it."""
        from segmint.predict import latest_predictions_sql

        return self.store.query(latest_predictions_sql() + " ORDER BY user_id")

    def export_predictions(
        self, ref: str, out: str | Path, fmt: str | None = None, *, command: str | None = None
    ) -> list[Path]:
        """Write a prediction run's scores (``user_id`` and the kind's columns; no contact
        details) in the format of ``out``'s extension (csv, xlsx, parquet, json, jsonl;
        ``fmt`` when it has none, else csv); a workbook has a second sheet, ``about``: the
        run, its settings and what each column means. Recorded in :meth:`exports`, so an
        erasure rewrites the file without the person."""
        from segmint.predict import about_run
        from segmint.profiles import new_record, record_export, resolve_format, write_tables

        run = self.prediction_run(ref)
        path, fmt = resolve_format(out, fmt)
        tables = {"predictions": run.scores}
        if fmt == "xlsx":  # a workbook explains itself: what the run is, what columns mean
            tables["about"] = about_run(run, self.config.currency)
        paths = write_tables(tables, path, fmt)
        record_export(
            self.store,
            new_record(
                "predictions",
                paths[0],
                fmt,
                len(run.scores),
                run_id=run.run_id,
                command=command or _api("predictions"),
            ),
        )
        return paths

    # -- recommendations -----------------------------------------------------------------
    def evaluate_recommenders(self, **kwargs: Any) -> Any:
        """Compare the recommenders on a time split (see :func:`segmint.recommend.evaluate_models`)."""
        from segmint.recommend import evaluate_models

        kwargs.setdefault("config", self.config.recommend)
        kwargs.setdefault("engine", self.engine)
        return evaluate_models(self.store, **kwargs)

    def recommend_all(self, model: str = "best", **kwargs: Any) -> Any:
        """Top-N for every user, stored as a versioned run (see :func:`segmint.recommend.recommend_all`)."""
        from segmint.recommend import recommend_all

        kwargs.setdefault("personalization", self.config.privacy.personalization)
        kwargs.setdefault("engine", self.engine)
        return recommend_all(self.store, model, config=self.config.recommend, **kwargs)

    def recommend(self, user_id: str, n: int = 10) -> pd.DataFrame:
        """One user's items from the latest run: item_id, title, score, reason, model."""
        from segmint.recommend import recommend_for_user

        mode = self.config.privacy.personalization
        return recommend_for_user(self.store, user_id, n, personalization=mode)

    # -- profiles and personas -----------------------------------------------------------
    def profile(
        self,
        user_id: str,
        *,
        feature_run_id: str | None = None,
        actor: str | None = None,
        why: str | None = None,
    ) -> UserProfile:
        """One user's profile (see :class:`segmint.profiles.UserProfile`): contacts opened
        from their sealed form and masked, the opening audit-logged (``personal.read``,
        ``actor`` - the operating-system user by default - and ``why``).

        Raises :class:`~segmint.errors.NotFoundError` for an unknown user.
        """
        from segmint.profiles import user_profile
        from segmint.recommend import list_recommendation_runs, recommend_for_user
        from segmint.store import open_vault

        profile = user_profile(
            self.store,
            user_id,
            feature_run_id=feature_run_id,
            vault=open_vault(self.store, self.config),
            actor=actor,
            why=why,
        )
        try:
            if not list_recommendation_runs(self.store, "batch").empty:
                mode = self.config.privacy.personalization
                recs = recommend_for_user(self.store, user_id, 5, personalization=mode)
                profile.extras["recommendations"] = recs.to_dict(orient="records")
        except NotFoundError:
            pass
        return profile

    def personas(self, ref: str) -> list[Persona]:
        """Personas of every segment of a run (a run id, or a segmentation's latest run)."""
        from segmint.profiles import personas

        return personas(
            self.store,
            self.segment_run(ref),
            locale=self.config.locale,
            currency=self.config.currency,
        )

    def persona(self, ref: str, segment: str) -> Persona:
        """The persona of one segment of a run; the error lists the run's segments."""
        found = self.personas(ref)
        for p in found:
            if p.segment == segment:
                return p
        names = [p.segment for p in found]
        close = get_close_matches(segment, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise NotFoundError(
            f"no segment {segment!r} in run {found[0].run_id if found else ref}{hint} "
            f"(segments: {', '.join(names)})"
        )

    def export_profiles(
        self,
        out: str | Path,
        fmt: str | None = None,
        *,
        feature_run_id: str | None = None,
        command: str | None = None,
    ) -> list[Path]:
        """Write one row per user (attributes with masked contacts, features, the latest
        segment of every segmentation) in the format of ``out``'s extension (csv, xlsx,
        parquet, json, jsonl; ``fmt`` when it has none, else csv). Recorded in
        :meth:`exports`."""
        from segmint.profiles import (
            new_record,
            profiles_table,
            record_export,
            resolve_format,
            write_tables,
        )

        table = profiles_table(self.store, feature_run_id=feature_run_id)
        path, fmt = resolve_format(out, fmt)
        paths = write_tables({"profiles": table}, path, fmt)
        record_export(
            self.store,
            new_record("profiles", paths[0], fmt, len(table), command=command or _api("profiles")),
        )
        return paths

    def export_personas(
        self, ref: str, out: str | Path, fmt: str | None = None, *, command: str | None = None
    ) -> list[Path]:
        """Write the personas of a run: one workbook with a sheet per table (``.xlsx``),
        one JSON object (``.json``), or a folder with one file per table (``out`` without
        extension: ``fmt``, default csv). Recorded in :meth:`exports`."""
        from segmint.profiles import (
            new_record,
            persona_tables,
            record_export,
            resolve_format,
            write_tables,
        )

        found = self.personas(ref)
        tables = persona_tables(found)
        path, fmt = resolve_format(out, fmt, n_tables=len(tables))
        paths = write_tables(tables, path, fmt)
        record_export(
            self.store,
            new_record(
                "personas",
                paths[0] if len(paths) == 1 else paths[0].parent,
                fmt,
                len(tables["overview"]),
                segmentation=found[0].segmentation if found else None,
                run_id=found[0].run_id if found else None,
                command=command or _api("personas"),
            ),
        )
        return paths

    def export_segment(
        self,
        ref: str,
        out: str | Path,
        *,
        segment: str | None = None,
        fmt: str | None = None,
        purpose: str | None = None,
        command: str | None = None,
        actor: str | None = None,
    ) -> Any:
        """Write the members of a segmentation run (or of one ``segment``) as a list for
        other tools: pseudonymous ids (``pseudonym, segment``) by default, or user ids and
        contacts of the members who consented to ``purpose``. Recorded in :meth:`exports`.

        Returns a :class:`segmint.profiles.ExportRecord` (rows written, users left out).
        """
        from segmint.campaigns import pseudonym_key
        from segmint.profiles import export_list

        run = self.segment_run(ref)
        members = run.assignments[["user_id", "segment"]]
        if segment is not None:
            names = sorted(members["segment"].astype(str).unique())
            if segment not in names:
                close = get_close_matches(segment, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise NotFoundError(
                    f"no segment {segment!r} in run {run.run_id}{hint} "
                    f"(segments: {', '.join(names)})"
                )
            members = members[members["segment"] == segment]
        return export_list(
            self.store,
            members.reset_index(drop=True),
            out,
            fmt,
            key=pseudonym_key(self.root),
            purpose=purpose,
            vault=self._vault_if(purpose),
            kind="segment",
            command=command or _api("segment"),
            actor=actor,
            segmentation=run.segmentation,
            run_id=run.run_id,
            segment=segment,
        )

    def export_audience(
        self,
        campaign: str,
        out: str | Path,
        *,
        fmt: str | None = None,
        purpose: str | None = None,
        arm: str = "treatment",
        command: str | None = None,
    ) -> Any:
        """Write a campaign's audience (its latest plan, or the plan with this run id or
        unique start of one; the ``arm`` group, treatment by default) as a list for other
        tools: ``pseudonym, segment, channel`` by default, user ids and contacts with a
        ``purpose``. Recorded in :meth:`exports`.

        ``arm`` is an arm of the plan (a variant's name), ``control`` (the plan's control,
        whatever its label) or ``treatment`` (every arm but the control); a plan with
        variants adds an ``arm`` column."""
        from segmint.campaigns import latest_plan, load_plan, pseudonym_key
        from segmint.profiles import export_list

        plan = latest_plan(self.store, campaign)
        if plan is None:
            if campaign in self.config.playbook.campaigns:
                raise NotFoundError(
                    f"campaign {campaign!r} has no plan yet: run `segmint campaign plan "
                    f"{campaign}` first, then export its audience"
                )
            try:
                plan = load_plan(self.store, campaign)
            except NotFoundError:
                names = sorted(self.config.playbook.campaigns)
                close = get_close_matches(campaign, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise NotFoundError(
                    f"no campaign or campaign plan {campaign!r}; {hint}campaigns of the "
                    f"playbook: {', '.join(names) or 'none'} (plan ids: segmint campaign list)"
                ) from None
        members = self._audience_arm(plan, arm)
        return export_list(
            self.store,
            members,
            out,
            fmt,
            key=pseudonym_key(self.root),
            purpose=purpose,
            vault=self._vault_if(purpose),
            kind="audience",
            command=command or _api("audience"),
            segmentation=plan.segmentation,
            run_id=plan.run_id,
            campaign=plan.campaign,
        )

    def _vault_if(self, purpose: str | None) -> Any:
        """The store's vault when a contact list (``purpose``) will open contacts."""
        from segmint.store import open_vault

        return None if purpose is None else open_vault(self.store, self.config)

    def _audience_arm(self, plan: Any, arm: str) -> pd.DataFrame:
        """The members of one arm of a plan (see :meth:`export_audience`)."""
        from segmint.campaigns import (
            DEFAULT_CONTROL,
            DEFAULT_TREATMENT,
            load_audience,
            normalize_arm,
        )

        arm = normalize_arm(arm)
        arms = list(plan.n_by_arm) or list(plan.split)
        variants = bool((set(arms) | set(plan.split)) - {DEFAULT_TREATMENT, DEFAULT_CONTROL})
        if arm == DEFAULT_CONTROL:
            arm = plan.control
        audience = load_audience(self.store, plan.run_id)
        if arm == DEFAULT_TREATMENT and arm not in arms:
            audience = audience[audience["arm"].astype(str) != plan.control]
        elif arm in arms or arm == plan.control:
            audience = audience[audience["arm"].astype(str) == arm]
        else:
            close = get_close_matches(arm, arms, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"arm {arm!r}: {hint}plan {plan.run_id} has the arms {', '.join(arms)} "
                f"(or use {DEFAULT_TREATMENT} for every arm but the control, {plan.control!r})"
            )
        columns = ["user_id", "segment", "channel"] + (["arm"] if variants else [])
        return audience[columns].reset_index(drop=True)

    def exports(self, limit: int | None = None) -> pd.DataFrame:
        """The recorded exports, newest first: when, who, what, why, rows, file."""
        from segmint.profiles import export_log

        return export_log(self.store, limit=limit)

    # -- measuring effect --------------------------------------------------------------
    def evaluate(self, campaign: str, *, save: bool = True, **kwargs: Any) -> Any:
        """Evaluate a campaign from its holdout (see
        :func:`segmint.experiments.evaluate_campaign`); the result is stored in
        ``campaign_evaluations`` (for the report) unless ``save=False``."""
        from segmint.experiments import evaluate_campaign, save_evaluation

        ev = evaluate_campaign(self.store, campaign, config=self.config, **kwargs)
        if save:
            save_evaluation(self.store, ev)
        return ev

    def import_campaign(
        self,
        name: str,
        path: str | Path,
        *,
        control_share: float | None = None,
        split: dict[str, float] | None = None,
        control: str = "control",
        columns: dict[str, str] | None = None,
        timezone: str | None = None,
        cost_per_message: float = 0.0,
        cost_per_redemption: float = 0.0,
        outcome_end: date | None = None,
    ) -> dict[str, Any]:
        """Import a past randomized campaign from a CSV or Parquet file of
        ``user_id, arm, sent_at`` (renamed by ``columns``: ours -> the file's); naive send
        times are in ``timezone`` (default: the project's). Arms have any names; the design
        is ``control_share`` or ``split``, the control arm ``control``. Final outcomes are
        imported only from columns mapped in ``columns`` (``converted``, ``revenue``,
        ``visited``); ``outcome_end`` is the last day they were measured. See
        :func:`segmint.experiments.import_assignments`."""
        from segmint.experiments import import_assignments

        file = self.config.resolve(str(path)) if not Path(path).is_absolute() else Path(path)
        if not file.exists():
            file = Path(path)
        if not file.exists():
            raise NotFoundError(f"no such file: {path}")
        frame = (
            pd.read_parquet(file)
            if file.suffix.lower() in (".parquet", ".pq")
            else pd.read_csv(file, dtype=str, keep_default_na=False)
        )
        wanted = {"user_id": "user_id", "arm": "arm", "sent_at": "sent_at", **(columns or {})}
        missing = [theirs for theirs in wanted.values() if theirs not in frame.columns]
        if missing:
            found = ", ".join(map(str, frame.columns))
            hints = "".join(
                f"; {m!r}: did you mean {c[0]!r}?"
                for m in missing
                if (c := get_close_matches(m, list(map(str, frame.columns)), n=1))
            )
            raise ConfigError(
                f"{file}: missing column(s) {', '.join(missing)} (found: {found}){hints}"
            )
        frame = frame[list(dict.fromkeys(wanted.values()))]  # only what was mapped
        frame = frame.rename(columns={theirs: ours for ours, theirs in wanted.items()})
        sent = pd.to_datetime(frame["sent_at"], errors="coerce")
        if sent.dt.tz is None:
            sent = sent.dt.tz_localize(
                timezone or self.config.timezone, ambiguous="NaT", nonexistent="NaT"
            )
        frame["sent_at"] = sent
        return import_assignments(
            self.store,
            name,
            frame,
            control_share=control_share,
            split=split,
            control=control,
            cost_per_message=cost_per_message,
            cost_per_redemption=cost_per_redemption,
            source=str(file),
            outcome_end=outcome_end,
        )

    def refresh(
        self,
        names: str | Iterable[str] | None = None,
        *,
        as_of: str | date | datetime | None = None,
        psi_threshold: float = 0.25,
        size_change: float = 0.2,
        profile_features: Sequence[str] | None = None,
    ) -> RefreshResult:
        """Recompute features and segments and compare every segmentation with its last run.

        Parameters
        ----------
        names : str or iterable of str, optional
            Segmentations to refresh (default: all in segmint.yaml).
        as_of : date, datetime or str, optional
            The features' as-of ("today", "latest" or a date); the config's by default.
        psi_threshold : float, default 0.25
            A segment's profile is flagged when a profile feature's PSI exceeds this.
        size_change : float, default 0.2
            A segment's size is flagged when its share changed by more than this (relative).
        profile_features : sequence of str, optional
            The features whose drift defines a profile's
            (default :data:`segmint.experiments.PROFILE_FEATURES`).
        """
        from segmint.experiments import PROFILE_FEATURES, RefreshResult, compare_runs
        from segmint.features import load_features

        started = time.perf_counter()
        wanted = (
            [names]
            if isinstance(names, str)
            else list(names)
            if names is not None
            else list(self.config.segmentations)
        )
        previous = _previous_runs(self.store, wanted)
        feature_run = self.compute_features(as_of=as_of)
        results = self.segment(wanted, feature_run=feature_run)
        assert isinstance(results, list)
        cache: dict[str, pd.DataFrame] = {}
        out = []
        for result in results:
            prev_run, prev_features = previous[result.segmentation]
            fb = None
            if prev_features is not None:
                if prev_features not in cache:
                    cache[prev_features] = load_features(self.store, prev_features)
                fb = cache[prev_features]
            out.append(
                compare_runs(
                    self.store,
                    prev_run,
                    result.run_id,
                    features_before=fb,
                    features_after=feature_run.data,
                    profile_features=(
                        PROFILE_FEATURES if profile_features is None else profile_features
                    ),
                    psi_threshold=psi_threshold,
                    size_change=size_change,
                )
            )
        seconds = time.perf_counter() - started
        log.info("refreshed %d segmentations in %.2fs", len(out), seconds)
        return RefreshResult(
            feature_run_id=feature_run.run_id,
            as_of=feature_run.as_of,
            segmentations=out,
            psi_threshold=psi_threshold,
            size_change=size_change,
            seconds=seconds,
        )

    def _run_id(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        from segmint.segments import resolve_run

        return resolve_run(self.store, ref)

    def retention(
        self,
        *,
        cohort_by: str = "first_purchase",
        max_months: int = 24,
        segmentation: str | None = None,
    ) -> dict[str, pd.DataFrame]:
        """Cohort retention (wide matrix), repeat-purchase rate and, given a segmentation
        (name or run id), retention and repeat rate by segment."""
        from segmint.experiments import (
            repeat_purchase_rate,
            retention_by_segment,
            retention_matrix,
        )

        run_id = self._run_id(segmentation)
        out = {
            "matrix": retention_matrix(
                self.store,
                cohort_by=cohort_by,  # type: ignore[arg-type]  # checked by retention_matrix
                max_months=max_months,
            ).wide(),
            "repeat": repeat_purchase_rate(self.store, segment_run_id=run_id),
        }
        if run_id is not None:
            out["by_segment"] = retention_by_segment(self.store, run_id)
        return out

    def satisfaction(self, segmentation: str | None = None) -> Any:
        """NPS / CSAT by segment with CIs (see
        :func:`segmint.experiments.satisfaction_by_segment`)."""
        from segmint.experiments import satisfaction_by_segment

        return satisfaction_by_segment(self.store, self._run_id(segmentation))

    def _segment_users_sql(self, ref: str | None) -> str | None:
        """``SEGMENTATION:SEGMENT`` -> SQL selecting its users in the latest run."""
        if ref is None:
            return None
        if ":" not in ref:
            raise ConfigError(f"{ref!r}: write SEGMENTATION:SEGMENT, e.g. lifecycle:active")
        name, segment = ref.split(":", 1)
        run_id = self._run_id(name)
        assert run_id is not None
        n = self.store.scalar(
            "SELECT count(*) FROM segment_assignments WHERE run_id = ? AND segment = ?",
            [run_id, segment],
        )
        if not n:
            raise NotFoundError(f"segment {segment!r} has no users in run {run_id}")
        return (
            f"SELECT user_id FROM segment_assignments WHERE run_id = {lit(run_id)} "
            f"AND segment = {lit(segment)}"
        )

    def before_after(
        self,
        on: date,
        *,
        metric: str = "revenue",
        window_days: int = 30,
        segment: str | None = None,
        compare: str | None = None,
    ) -> Any:
        """A metric before vs after a date (not causal) and, with a comparison group,
        difference-in-differences (see :func:`segmint.experiments.before_after`)."""
        from segmint.experiments import before_after

        return before_after(
            self.store,
            date=on,
            metric=metric,  # type: ignore[arg-type]  # checked by before_after
            window_days=window_days,
            users=self._segment_users_sql(segment),
            comparison=self._segment_users_sql(compare),
        )

    def status(self) -> dict[str, Any]:
        """The data-quality report of the store (see :func:`segmint.clean.quality_report`)."""
        from segmint.clean import quality_report

        return quality_report(self.store)

    def quarantine(
        self,
        source: str | None = None,
        *,
        table: str | None = None,
        reason: str | None = None,
        kind: str | None = None,
    ) -> Any:
        """The quarantine as it is now, as a DataFrame: rejected rows (kind ``rejected``,
        not loaded) and field issues (kind ``field_issue``: the row was loaded with
        ``field`` set to NULL, or its stored value kept if the row was already stored;
        ``raw_value`` is what the source held), with their rule,
        reason and raw content, ordered by table, source and row.

        Parameters
        ----------
        source : str, optional
            Only this source's rows.
        table : str, optional
            Only rows meant for this table (``users``, ``orders``, ...).
        reason : str, optional
            Only this rule (``unknown_reference``, ``malformed_email``, ...).
        kind : {"rejected", "field_issue"}, optional
            Only rejected rows, or only field issues.
        """
        from segmint.sources import open_quarantine
        from segmint.store import open_vault

        where, params = self._quarantine_filter(source, table, reason, kind)
        rows = self.store.query(
            f'SELECT * FROM quarantine {where} ORDER BY target_table, source, "row", field',
            params or None,
        )
        return open_quarantine(open_vault(self.store, self.config), rows)

    def quarantine_summary(
        self,
        source: str | None = None,
        *,
        table: str | None = None,
        reason: str | None = None,
        kind: str | None = None,
    ) -> Any:
        """Counts of :meth:`quarantine` by table, source, kind and rule (column ``n``),
        largest first within each table."""
        where, params = self._quarantine_filter(source, table, reason, kind)
        return self.store.query(
            "SELECT target_table, source, kind, rule, count(*) AS n FROM quarantine "
            f"{where} GROUP BY target_table, source, kind, rule "
            "ORDER BY target_table, source, kind DESC, n DESC, rule",
            params or None,
        )

    def _quarantine_filter(
        self, source: str | None, table: str | None, reason: str | None, kind: str | None
    ) -> tuple[str, list[str]]:
        if table is not None and table not in TABLES:
            raise NotFoundError(f"no table {table!r}; tables: {', '.join(TABLES)}")
        if kind is not None and kind not in ("rejected", "field_issue"):
            raise NotFoundError(f"no quarantine kind {kind!r}; kinds: rejected, field_issue")
        conds = [
            (col, value)
            for col, value in (
                ("source", source),
                ("target_table", table),
                ("rule", reason),
                ("kind", kind),
            )
            if value is not None
        ]
        where = " AND ".join(f"{col} = ?" for col, _ in conds)
        return (f"WHERE {where}" if where else ""), [value for _, value in conds]

    def close(self) -> None:
        if self._store is not None and not self._borrowed:
            self._store.close()
        self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, store={self.config.store!r})"


def _api(what: str) -> str:
    return f"python: Project.export_{what}"


def open_project(path: str | Path = ".", *, read_only: bool | None = None) -> Project:
    """Open the project in ``path`` (a folder holding ``segmint.yaml``, or the file).

    ``read_only``: see :class:`Project` (True to read a DuckDB project that a running
    ``segmint serve`` owns)."""
    return Project(load_config(path), read_only=read_only)
