"""One read model of a batch, loaded once per use: the job, its items with their orders and contacts, the items the
robot may also have created from another batch, and the operators' summary built from them.

Everything operators see of a batch renders from it without reading the database again: the summary text
(domain.batches.summary.render_summary_text), the summary and items-table artifacts (relay/artifacts.py), the CLI's
`status` and `summary`, and the read API (webhook/jobs_api.py). Loading it costs three queries: the job, its items
(joined to orders and contacts), and the possible duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from domain.batches.jobs import ItemView, get_job_view
from domain.batches.summary import BatchSummary, possible_duplicates, summarise
from domain.models import RobotJob


@dataclass(frozen=True)
class BatchView:
    job: RobotJob
    items: list[ItemView]  # in the batch's order
    duplicates: dict[str, str]  # item id → what operators read about a possible duplicate on the portal
    summary: BatchSummary


def load_batch(session: Session, job_id: str) -> BatchView:
    """The batch as operators see it, read once (raises UnknownJob)."""
    view = get_job_view(session, job_id)
    duplicates = possible_duplicates(session, view)
    return BatchView(job=view.job, items=view.items, duplicates=duplicates, summary=summarise(view, duplicates))
