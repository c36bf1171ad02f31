"""Our clock decides, not Prefect's: the suspend timeout outlasts the job's deadline by the reconciler's interval and
a margin, and the reconciler's schedule is the interval that rule counts on (served and in prefect.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from flows.deployments import RECONCILE, RECONCILE_INTERVAL_S, SUSPEND_MARGIN_S, orchestrate_key
from flows.orchestrate import suspend_timeout_s
from stack.processes import PROJECT_ROOT

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_suspend_timeout_is_the_deadline_plus_a_reconciler_interval_and_a_margin():
    assert suspend_timeout_s(NOW + timedelta(seconds=390), now=NOW) == 390 + 1 + RECONCILE_INTERVAL_S + SUSPEND_MARGIN_S
    # A recovery run that suspends after the deadline still leaves the reconciler a full interval and the margin.
    assert suspend_timeout_s(NOW - timedelta(minutes=5), now=NOW) == 1 + RECONCILE_INTERVAL_S + SUSPEND_MARGIN_S
    assert suspend_timeout_s(None, now=NOW) == 1 + RECONCILE_INTERVAL_S + SUSPEND_MARGIN_S
    assert SUSPEND_MARGIN_S >= RECONCILE_INTERVAL_S  # at least one more reconcile before Prefect's timer


def test_the_reconciler_is_scheduled_at_the_interval_the_suspend_timeout_counts_on():
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    [reconcile] = [d for d in config["deployments"] if d["name"] == RECONCILE]
    assert [s["interval"] for s in reconcile["schedules"]] == [RECONCILE_INTERVAL_S]
    from flows.serve import deployments

    [served] = [d for d in deployments() if d.name == RECONCILE]
    assert [s.schedule.interval.total_seconds() for s in served.schedules] == [RECONCILE_INTERVAL_S]


def test_orchestration_keys_start_with_the_submits_and_go_on_per_recovery():
    assert orchestrate_key("j") == "orchestrate:j"
    assert orchestrate_key("j", 2) == "orchestrate:j:recover:2"
