"""The FastAPI app of the forecasting service: its endpoints over one loaded `EmotionPredictor`.

    app = create_app(EmotionPredictor.from_pretrained("runs/quickstart"), settings)  # settings: ServeArguments

- `POST /v1/forecast`: `{"history": [...], "emotions": optional}` -> one forecast;
- `POST /v1/forecast/batch`: `{"histories": [[...], ...], "emotions": optional}` -> `{"forecasts": [...]}`;
- `GET /health`: the model, its decision rule, device, limits and how many batches ran;
- `/docs` and `/openapi.json`: the schema of every body (`schema.py`).

The caller loads the predictor once; `ForecastService` checks each request's size (`limits.py`)
and whether its emotions can be used, then hands its histories to the micro-batcher
(`batcher.py`), which runs `predict_batch` for the requests that arrive together in one worker
thread. Errors are one JSON line each (`error_responses.py`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import AsyncIterator

from fastapi import FastAPI

from emotion_predictor.arguments import ServeArguments
from emotion_predictor.labels import EMOTIONS
from emotion_predictor.prediction.predictor import EmotionPredictor, Forecast
from emotion_predictor.serving.batcher import MicroBatcher
from emotion_predictor.serving.error_responses import install_error_handlers
from emotion_predictor.serving.limits import RequestBodyLimit, check_request_size
from emotion_predictor.serving.schema import (
    BatchForecastRequest,
    BatchForecastResponse,
    DecisionRule,
    ErrorMessage,
    ForecastRequest,
    ForecastResponse,
    Health,
    Limits,
)

FORECAST_PATH = "/v1/forecast"
BATCH_PATH = "/v1/forecast/batch"
ERROR_RESPONSES = {
    400: {"model": ErrorMessage, "description": "the body is not valid JSON, or gives emotions this model cannot take"},
    413: {"model": ErrorMessage, "description": "the body, a history or an utterance is over a limit (see /health)"},
    422: {"model": ErrorMessage, "description": "the JSON is not a valid request; the line says where and what"},
}


def decision_rule_of(predictor: EmotionPredictor) -> DecisionRule:
    """The saved decision rule, as `decide_with_metadata` applies it (tau 0 when none was saved)."""
    rule = predictor.decision_rule
    tau = predictor.classifier.metadata.get("tau", 0.0) if rule == "prior_corrected" else None
    return DecisionRule(name=rule, tau=tau)


class ForecastService:
    """The loaded predictor behind the micro-batcher, and what a request may give it."""

    def __init__(self, predictor: EmotionPredictor, settings: ServeArguments) -> None:
        self.predictor = predictor
        self.settings = settings
        self.decision_rule = decision_rule_of(predictor)
        self.batcher = MicroBatcher(self.run_batch, settings.batch_size, settings.max_batch_wait_ms / 1000)

    async def forecast(
        self, histories: list[list[str]], emotions: list[list[str | None] | None], batch: bool
    ) -> list[ForecastResponse]:
        """Forecasts for a validated request's histories (with each one's emotions or None), in order."""
        check_request_size(histories, self.settings, batch)
        forecasts: list[Forecast] = await self.batcher.submit(list(zip(histories, emotions)))
        return [
            ForecastResponse(label=f.label, probabilities=f.probabilities, decision_rule=self.decision_rule)
            for f in forecasts
        ]

    def run_batch(self, items: list[tuple[list[str], list[str | None] | None]]) -> list[Forecast]:
        """In the worker thread: one predict_batch call for the gathered (history, emotions) pairs."""
        histories = [history for history, _ in items]
        if all(emotions is None for _, emotions in items):
            return self.predictor.predict_batch(histories)
        return self.predictor.predict_batch(histories, emotions=[emotions for _, emotions in items])

    def health(self) -> Health:
        return Health(
            status="ok",
            model=self.predictor.classifier.name,
            decision_rule=self.decision_rule,
            device=self.predictor.device,
            reads_emotions=self.predictor.trajectory_turns > 0,
            limits=Limits(**{name: getattr(self.settings, name) for name in Limits.model_fields}),
            batches_run=self.batcher.calls,
            histories_forecast=self.batcher.items,
        )


def create_app(predictor: EmotionPredictor, settings: ServeArguments) -> FastAPI:
    """The service's app over a loaded `predictor`; `settings` gives its micro-batching and limits."""
    service = ForecastService(predictor, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(
        title="Emotion Predictor",
        version=importlib.metadata.version("emotion-predictor"),
        description=f"Forecasts the emotion of the next turn of a conversation ({', '.join(EMOTIONS)}).",
        lifespan=lifespan,
    )
    app.add_middleware(RequestBodyLimit, max_bytes=settings.max_request_bytes)
    install_error_handlers(app, {FORECAST_PATH: ForecastRequest, BATCH_PATH: BatchForecastRequest})

    @app.post(FORECAST_PATH, response_model=ForecastResponse, responses=ERROR_RESPONSES)
    async def forecast(request: ForecastRequest) -> ForecastResponse:
        """The forecast for the turn after one history: the label and the probability of each emotion."""
        [answer] = await service.forecast([request.history], [request.emotions], batch=False)
        return answer

    @app.post(BATCH_PATH, response_model=BatchForecastResponse, responses=ERROR_RESPONSES)
    async def forecast_batch(request: BatchForecastRequest) -> BatchForecastResponse:
        """The forecasts for many histories at once, in the order of the request's histories."""
        emotions = request.emotions or [None] * len(request.histories)
        return BatchForecastResponse(forecasts=await service.forecast(request.histories, emotions, batch=True))

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """The service is up: the model it serves, its decision rule, device, limits and batches run."""
        return service.health()

    return app
