"""Forecasting with a saved model: loading, batched inference, decision rules, `EmotionPredictor` and its I/O."""
