"""Measuring effect: did a campaign work, for whom, and was it worth the money?

Typical use::

    from segmint import open_project

    with open_project("my-shop") as p:
        ev = p.evaluate("winback", window_days=30)     # lift with CIs, SRM, CUPED, ROI
        print(ev.effects)                              # tidy DataFrame
        print(ev.segments[["segment", "lift", "p_holm", "p_bh"]])
        res = p.refresh()                              # new runs, migrations, PSI drift

The statistics (:mod:`segmint.experiments._stats`) are plain vectorised functions checked
against scipy and statsmodels; see docs/experiments.md for the definitions.
"""

from segmint.campaigns import POOLED
from segmint.experiments._breakdown import breakdown_attributes, breakdown_table
from segmint.experiments._evaluate import (
    CampaignEvaluation,
    evaluate_campaign,
    import_assignments,
    latest_evaluations,
    save_evaluation,
)
from segmint.experiments._power import (
    mde_mean,
    mde_proportion,
    users_needed_mean,
    users_needed_proportion,
)
from segmint.experiments._refresh import (
    PROFILE_FEATURES,
    RefreshResult,
    SegmentationRefresh,
    compare_runs,
    feature_psi,
)
from segmint.experiments._retention import (
    BeforeAfterResult,
    RetentionResult,
    before_after,
    repeat_purchase_rate,
    retention_by_segment,
    retention_matrix,
)
from segmint.experiments._satisfaction import SatisfactionResult, satisfaction_by_segment
from segmint.experiments._stats import (
    CupedResult,
    SrmResult,
    WelchResult,
    benjamini_hochberg,
    bootstrap_diff_interval,
    bootstrap_means,
    cuped,
    holm,
    mean_interval,
    newcombe_interval,
    nps_interval,
    percentile_interval,
    psi,
    psi_labels,
    ratio_interval,
    srm_test,
    two_proportion_ztest,
    welch_batch,
    welch_from_moments,
    welch_ttest,
    wilson_interval,
)
from segmint.experiments._uplift import (
    TLearner,
    UpliftResult,
    auuc_score,
    evaluate_uplift,
    qini_coefficient,
    qini_curve,
    uplift_by_decile,
)

__all__ = [
    "PROFILE_FEATURES",
    "mde_mean",
    "mde_proportion",
    "users_needed_mean",
    "users_needed_proportion",
    "BeforeAfterResult",
    "CampaignEvaluation",
    "CupedResult",
    "POOLED",
    "RefreshResult",
    "RetentionResult",
    "SatisfactionResult",
    "SegmentationRefresh",
    "SrmResult",
    "TLearner",
    "UpliftResult",
    "WelchResult",
    "auuc_score",
    "before_after",
    "breakdown_attributes",
    "breakdown_table",
    "benjamini_hochberg",
    "bootstrap_diff_interval",
    "bootstrap_means",
    "compare_runs",
    "cuped",
    "evaluate_campaign",
    "evaluate_uplift",
    "feature_psi",
    "holm",
    "import_assignments",
    "latest_evaluations",
    "mean_interval",
    "newcombe_interval",
    "nps_interval",
    "percentile_interval",
    "psi",
    "psi_labels",
    "qini_coefficient",
    "qini_curve",
    "ratio_interval",
    "repeat_purchase_rate",
    "retention_by_segment",
    "retention_matrix",
    "satisfaction_by_segment",
    "save_evaluation",
    "srm_test",
    "two_proportion_ztest",
    "uplift_by_decile",
    "welch_batch",
    "welch_from_moments",
    "welch_ttest",
    "wilson_interval",
]
