"""The campaign tables in the store (part of its schema, see ``segmint.store._schema``).

::

    campaign_runs(run_id, campaign, created_at, as_of, segmentation, segment_run_id,
                  previous_run_id, status, n_eligible, n_treatment, n_control, params JSON,
                  funnel JSON)
    campaign_audiences(run_id, campaign, user_id, segment, channel, step, arm,
                       idempotency_key)                 one row per eligible user and plan
    campaign_assignments(campaign, user_id, arm, bucket, assigned_at, run_id)
                                                        first arm of a user; never changes
    deliveries(idempotency_key, campaign, run_id, user_id, step, channel, status, attempts,
               ambiguous, message_id, error, created_at, claimed_at, sent_at, updated_at)
                                                        one row per message ever attempted
    suppressions(user_id, address, channel, reason, created_at)

The unsubscribe signing keys are never in the store (see ``_keys.py``); a
``campaign_secrets`` table left by earlier versions is emptied on first use of the key
ring, its key moved to the project's key file.

Delivery ``status``: ``pending`` (not tried yet), ``sending`` (claimed and committed before
the channel was called), ``sent``, ``failed`` (retried on the next send until
``playbook.max_attempts``), ``rejected`` (permanent: the address or payload was refused),
``skipped`` (consent withdrawn, unsubscribed or suppressed between plan and send).
"""

from __future__ import annotations

# the store's SQL helpers, re-exported only for bench/campaign.py (no segmint module imports
# them from here: they import segmint.store); drop these lines once the bench does too
from segmint.store import column_exists, date_lit, lit, table_exists, ts_lit

__all__ = ["column_exists", "date_lit", "lit", "table_exists", "ts_lit"]
