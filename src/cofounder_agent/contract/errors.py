"""Domain errors: what went wrong, in the service's words; the web edge picks the status.

Services, the job system and the engine raise these; ``errors.py`` (the web tier) maps each
class to an HTTP status in one table, and the CLI prints the same messages. Nothing below
the web tier knows a status code.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service cannot carry out; ``code`` is the stable machine-readable name."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.field, self.retry_after = message, field, retry_after
        if code is not None:
            self.code = code


class InvalidField(DomainError):
    """A field of the request has a value the service refuses; the message starts with its name."""

    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.reason = message  # without the field's name: for callers that name it their own way


class InvalidImage(InvalidField):
    """An uploaded file is not a picture the service can decode."""

    code = "invalid_image"


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key came back with a different request than the one it was first used for."""

    code = "idempotency_key_reused"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"this Idempotency-Key was first used for a different request (job {job_id}); "
            "send the same request to get that job again, or use a new key for a new request",
            field="Idempotency-Key",
        )
        self.job_id = job_id


class NotFound(DomainError):
    """No such thing: a job, an image, a board, a recipe (``code``: ``<kind>_not_found``)."""

    def __init__(self, kind: str, field: str | None, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or f"no {kind} with this id", code=code or f"{kind}_not_found", field=field)


class Conflict(DomainError):
    """The thing exists but its state forbids the request (a finished job cannot be cancelled)."""


class QueueFull(DomainError):
    """The queue holds its maximum of jobs; ``retry_after`` says when to come back."""

    code = "queue_full"


class Unavailable(DomainError):
    """Nothing can serve the request now (models loading, no image source, generation failed)."""


class UpstreamFailed(DomainError):
    """A service this one depends on (Pexels) failed or sent something unusable."""


class UpstreamTimeout(UpstreamFailed):
    """A service this one depends on did not answer in time."""


class TooLarge(DomainError):
    """A request or upload is over its size limit."""

    code = "too_large"


class BrokenConfig(DomainError):
    """An operator's file (a saved recipe) is unreadable: the server's fault, not the caller's."""


class ClientGone(DomainError):
    """The client disconnected before its job ended; nobody is left to answer."""

    code = "client_gone"

    def __init__(self, job_id: str, kept: bool) -> None:
        what = "kept for its Idempotency-Key" if kept else "cancelled"
        super().__init__(f"the client left before job {job_id} ended; the job was {what}")
        self.job_id, self.kept = job_id, kept
