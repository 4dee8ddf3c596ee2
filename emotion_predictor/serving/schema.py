"""The service's request and response bodies as pydantic models: what /docs shows and what each
request field is checked against.

A history is checked by `check_history` (predictor.py), so a bad one gets the message
`EmotionPredictor` gives (`histories[3][1] is 12 (int), not a string; ...`); given emotions by
`check_emotions`. The checks run as "before" validators and raise ValueError with that message,
which `error_responses.py` sends as the one error line. The configurable size limits are checked
after validation, by `limits.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from emotion_predictor.errors import UserError
from emotion_predictor.labels import EMOTIONS
from emotion_predictor.prediction.decision import DECISION_RULES
from emotion_predictor.prediction.predictor import check_emotions, check_history

EmotionName = Literal[tuple(EMOTIONS)]  # type: ignore[valid-type]
HISTORY_HELP = "the dialogue so far, oldest utterance first (both speakers, in order)"
EMOTIONS_HELP = (
    "optional: the emotion of each turn of the history where known, one entry per turn "
    f"({', '.join(EMOTIONS)}, or null for unknown)"
)
EXAMPLE_HISTORY = ["Hi, how was your weekend?", "Awful. I lost my keys and missed my flight."]


def as_value_error(check: Callable[..., Any], *args: Any) -> Any:
    """`check(*args)`, its UserError raised as the ValueError that pydantic reports for a field."""
    try:
        return check(*args)
    except UserError as err:
        raise ValueError(str(err)) from None


def a_list_or_null(value: Any, expected: str) -> Any:
    """`value` when it is a list or null, else the ValueError `expected, not <type>`."""
    if value is not None and not isinstance(value, list):
        raise ValueError(f"{expected}, not {type(value).__name__}")
    return value


class ForecastRequest(BaseModel):
    """One history to forecast the next turn of."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"history": EXAMPLE_HISTORY}]})

    history: list[str] = Field(description=HISTORY_HELP, min_length=1)
    emotions: list[str | None] | None = Field(None, description=EMOTIONS_HELP)

    @field_validator("history", mode="before")
    @classmethod
    def _check_history(cls, value: Any) -> list[str]:
        return as_value_error(check_history, value, "history")

    @field_validator("emotions", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        return a_list_or_null(value, "emotions must be a list with one emotion or null per turn")

    @model_validator(mode="after")
    def _check_emotions(self) -> ForecastRequest:
        if self.emotions is not None:
            as_value_error(check_emotions, self.emotions, self.history, "emotions")
        return self


class BatchForecastRequest(BaseModel):
    """Many histories, forecast together; the forecasts come back in the same order."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"histories": [EXAMPLE_HISTORY, ["Guess what? I passed!"]]}]}
    )

    histories: list[list[str]] = Field(description=f"the histories, each {HISTORY_HELP}", min_length=1)
    emotions: list[list[str | None] | None] | None = Field(
        None, description=f"optional, one entry per history: null, or {EMOTIONS_HELP}"
    )

    @field_validator("histories", mode="before")
    @classmethod
    def _check_histories(cls, value: Any) -> list[list[str]]:
        if not isinstance(value, list):
            raise ValueError(f"histories must be a list of histories (lists of utterances), not {type(value).__name__}")
        if not value:
            raise ValueError("histories is empty; send at least one history")
        return [as_value_error(check_history, history, f"histories[{i}]") for i, history in enumerate(value)]

    @field_validator("emotions", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        return a_list_or_null(value, "emotions must be a list with one entry per history")

    @model_validator(mode="after")
    def _one_entry_per_history(self) -> BatchForecastRequest:
        if self.emotions is None:
            return self
        if len(self.emotions) != len(self.histories):
            raise ValueError(
                f"emotions has {len(self.emotions)} entries for {len(self.histories)} histories; "
                "give one per history (null where none is known)"
            )
        for i, (history, emotions) in enumerate(zip(self.histories, self.emotions)):
            if emotions is not None:
                as_value_error(check_emotions, emotions, history, f"emotions[{i}]")
        return self


Probabilities = create_model(
    "Probabilities",
    __doc__="The probability of each emotion for the next turn (they sum to 1).",
    **{name: (float, Field(description=f"probability that the next turn is {name}")) for name in EMOTIONS},
)


class DecisionRule(BaseModel):
    """How the model turns probabilities into the label (saved with the model)."""

    name: Literal[DECISION_RULES] = Field(  # type: ignore[valid-type]
        description="argmax (the most probable emotion) or prior_corrected (argmax of log p - tau log train prior)"
    )
    tau: float | None = Field(None, description="prior_corrected's tau, fitted on validation; null for argmax")


class ForecastResponse(BaseModel):
    """The forecast for the turn after one history."""

    label: EmotionName = Field(description="the forecast emotion of the next turn, by the decision rule")
    probabilities: Probabilities  # type: ignore[valid-type]
    decision_rule: DecisionRule


class BatchForecastResponse(BaseModel):
    """One forecast per history, in the order of the request's histories."""

    forecasts: list[ForecastResponse]


class Limits(BaseModel):
    """The request limits of this service (set in its config)."""

    max_history_turns: int = Field(description="most utterances in one history")
    max_utterance_chars: int = Field(description="most characters in one utterance")
    max_batch_histories: int = Field(description="most histories in one batch request")
    max_request_bytes: int = Field(description="most bytes in one request body")


class Health(BaseModel):
    """The service is up, with the model it serves."""

    status: Literal["ok"]
    model: str = Field(description="the model path or Hub id the service loaded")
    decision_rule: DecisionRule
    device: str = Field(description="where the model runs (cpu, cuda:0, ...)")
    reads_emotions: bool = Field(
        description="whether the model reads the emotions of the last turns (recognised, or given in the request)"
    )
    limits: Limits
    batches_run: int = Field(description="forward-pass calls since startup (requests that arrive together share one)")
    histories_forecast: int = Field(description="histories forecast since startup")


class ErrorMessage(BaseModel):
    """What was wrong with the request, in one line (where, what, and what is allowed)."""

    error: str = Field(examples=["histories[3][1] is 12 (int), not a string; each turn is one utterance's text"])
