"""The one exception tree of Tuition.

Every error a caller can see is one of these. The API maps each to the envelope
``{"error": {"type", "code", "message", "param"}}`` with the class's HTTP status::

    TuitionError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error
    │   ├── ValidationFailed          422   (a field is malformed or out of range)
    │   ├── CurrencyError             400   (unknown currency, mixed currencies)
    │   ├── AmountOverflow            400   (an amount beyond the storable range)
    │   ├── RequestTimeout            408   (the request body did not arrive in time)
    │   └── PayloadTooLarge           413   (the request body is over the size limit)
    ├── AuthenticationFailed          401 authentication_error
    ├── PermissionDenied              403 permission_error (a key's scopes or an operator's role)
    ├── NotFound                      404 invalid_request_error / resource_missing
    ├── Conflict                      409 conflict_error
    │   ├── IllegalTransition         409   (a state machine refused a move)
    │   └── IdempotencyKeyInUse       409   (same key still being processed)
    ├── IdempotencyKeyReused          422 idempotency_error
    └── ChannelError                  502 channel_error (a gateway refused or failed)

Subclasses set ``status``, ``type`` and a default ``code``; an instance may override
``code`` and name the offending field in ``param``.
"""

from __future__ import annotations

from typing import ClassVar


class TuitionError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    def to_dict(self) -> dict[str, str | None]:
        return {"type": self.type, "code": self.code, "message": self.message, "param": self.param}


class InvalidRequest(TuitionError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class ValidationFailed(InvalidRequest):
    status = 422
    default_code = "validation_failed"


class CurrencyError(InvalidRequest):
    default_code = "currency_invalid"


class AmountOverflow(InvalidRequest):
    default_code = "amount_too_large"


class RequestTimeout(InvalidRequest):
    status = 408
    default_code = "request_timeout"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "body_too_large"


class AuthenticationFailed(TuitionError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(TuitionError):
    status = 403
    type = "permission_error"
    default_code = "permission_denied"


class NotFound(TuitionError):
    status = 404
    type = "invalid_request_error"
    default_code = "resource_missing"


class Conflict(TuitionError):
    status = 409
    type = "conflict_error"
    default_code = "conflict"


class IllegalTransition(Conflict):
    default_code = "illegal_transition"


class IdempotencyKeyInUse(Conflict):
    default_code = "idempotency_key_in_use"


class IdempotencyKeyReused(TuitionError):
    status = 422
    type = "idempotency_error"
    default_code = "idempotency_key_reused"


class ChannelError(TuitionError):
    status = 502
    type = "channel_error"
    default_code = "channel_error"
