"""Named domain errors. Adapters map them to HTTP statuses or flow failures in one place each."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal the domain makes; `code` is stable, the message is for people."""

    code = "domain_error"

    def __init__(self, message: str, **details: object):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class UnknownWorkspace(NotFound):
    code = "unknown_workspace"


class UnknownJob(NotFound):
    code = "unknown_job"


class UnknownItem(NotFound):
    code = "unknown_item"


class UnknownOrder(NotFound):
    code = "unknown_order"


class UnknownStage(NotFound):
    code = "unknown_stage"


class ItemNotInJob(DomainError):
    """A result names an item of another job or workspace than the one it was authenticated for."""

    code = "item_not_in_job"


class OrdersNotDispatchable(DomainError):
    """Some chosen orders are not in the workspace, archived/closed, or already shipped."""

    code = "orders_not_dispatchable"


class NothingToDispatch(DomainError):
    code = "nothing_to_dispatch"


class ActiveJobExists(DomainError):
    """Only one shipment batch per workspace and carrier may be active at a time."""

    code = "active_job_exists"


class MissingCarrierConfig(DomainError):
    code = "missing_carrier_config"


class InvalidTransition(DomainError):
    """A job or item state change that its state machine does not allow."""

    code = "invalid_transition"


class JobNotRetryable(DomainError):
    code = "job_not_retryable"


class InvalidResult(DomainError):
    """A robot result that breaks the protocol (e.g. success without tracking number)."""

    code = "invalid_result"


class StageNotInPipeline(DomainError):
    code = "stage_not_in_pipeline"


class InvalidField(DomainError):
    code = "invalid_field"


class UnknownDeadLetter(NotFound):
    code = "unknown_dead_letter"


class DeadLetterAlreadyReplayed(DomainError):
    """A dead letter is replayed at most once; a failed replay leaves it pending for another try."""

    code = "dead_letter_already_replayed"
