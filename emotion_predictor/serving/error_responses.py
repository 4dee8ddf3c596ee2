"""Every failed request gets a JSON body `{"error": "<one line>"}` with a status that says whose fault it is.

- 400: the body is not valid JSON, or it gives emotions that this predictor cannot take;
- 413: the body or one of its histories is over a limit of the service (`limits.py`);
- 422: the JSON is not a valid request: the line says where and what (`histories[3][1] is 12 (int),
  not a string; ...`), from `check_history` and the schema's checks (`schema.py`), or from
  pydantic for the shape of the body (a missing or unknown field, a body that is not an object);
- 404 / 405: no such endpoint, or not with that method;
- 500: a bug or a broken model, logged with its traceback; the service keeps running.

Only the first problem of a request is reported: fixing it and sending again shows the next.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from emotion_predictor.errors import UserError, first_line
from emotion_predictor.prediction.predictor import short
from emotion_predictor.serving.limits import LimitExceeded

logger = logging.getLogger(__name__)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the request's JSON path: ('histories', 3, 1) -> histories[3][1]."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validation_message(error: dict[str, Any], request_model: type[BaseModel] | None) -> tuple[int, str]:
    """The status and the one line for the first problem pydantic (or FastAPI's JSON parsing) found."""
    kind, where = error["type"], field_path(tuple(error["loc"][1:]))  # loc[0] is "body"
    if kind == "json_invalid":
        return 400, f"the request body is not valid JSON: {error['ctx']['error']} at character {error['loc'][-1] + 1}"
    if kind == "value_error":  # a check of schema.py: its message already says where
        return 422, str(error["ctx"]["error"])
    example = json.dumps(request_model.model_config["json_schema_extra"]["examples"][0]) if request_model else "{...}"
    if not where and isinstance(error.get("input"), bytes):
        return 422, "the request body was not sent as JSON; send it with the header Content-Type: application/json"
    if not where and kind == "missing":
        return 422, f"the request has no body; send a JSON object such as {example}"
    if not where:
        return 422, f"the request body must be a JSON object such as {example}, not {short(error['input'])}"
    if kind == "missing":
        return 422, f"the request has no field {where!r}; send a JSON object such as {example}"
    if kind == "extra_forbidden":
        fields = ", ".join(request_model.model_fields) if request_model else "other fields"
        return 422, f"unknown field {where!r}; this endpoint takes {fields}"
    return 422, f"{where}: {error['msg']}"


def install_error_handlers(app: FastAPI, request_models: dict[str, type[BaseModel]]) -> None:
    """Answer every failure with one error line; `request_models` maps a path to its request body model."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        # An unknown field first: it is most often a misspelt one, which pydantic also reports as missing.
        errors = sorted(err.errors(), key=lambda error: error["type"] != "extra_forbidden")
        return error_response(*validation_message(errors[0], request_models.get(request.url.path)))

    @app.exception_handler(UserError)
    async def bad_request(request: Request, err: UserError) -> JSONResponse:
        status = 413 if isinstance(err, LimitExceeded) else 422
        return error_response(status, str(err))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 404:
            return error_response(404, f"{request.url.path} is not an endpoint of this service; /docs lists them")
        if err.status_code == 405:
            allowed = (err.headers or {}).get("Allow", "another method")
            return error_response(405, f"{request.url.path} takes {allowed}, not {request.method}")
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return error_response(
            500, f"internal error ({first_line(err, with_type=True)}); the service log has the details"
        )
