"""The HTTP forecasting service behind `ep-serve`: a FastAPI app over one loaded `EmotionPredictor`.

`app.create_app(predictor, settings)` builds it (`schema.py`: request and response models,
`limits.py`: request limits, `batcher.py`: micro-batching, `error_responses.py`: one error line
per bad request); `emotion_predictor.cli.serve` runs it under uvicorn.
"""
