"""The log shows progress, decisions and results: library noise a user cannot act on is dropped
(and nothing else), and long steps report how far they are."""

from __future__ import annotations

import importlib.util
import logging
import re
import warnings

import numpy as np
import pytest

from emotion_predictor import logs
from emotion_predictor.progress import PlainProgress, TrainingProgress, show_progress, track

QUIETENED = ("bitsandbytes.backends.cpu.ops", "", "transformers.modeling_utils")
NEW_HEAD_REPORT = (
    "BertForSequenceClassification LOAD REPORT from: /models/minilm\n"
    "Key               | Status  | \n------------------+---------+-\n"
    "classifier.bias   | MISSING | \nclassifier.weight | MISSING | \n\nNotes:\n- MISSING: newly initialized"
)


@pytest.fixture
def logging_setup(monkeypatch):
    """`logs.setup_logging()`, undone afterwards (filters and environment variables)."""
    saved = {name: list(logging.getLogger(name).filters) for name in QUIETENED}
    for variable in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(variable, raising=False)
    logs.setup_logging()
    yield
    for name, filters in saved.items():
        logging.getLogger(name).filters[:] = filters


def library_source(module: str) -> str:
    with open(importlib.util.find_spec(module).origin, encoding="utf-8") as handle:
        return handle.read()


def test_quietened_messages_are_the_ones_the_libraries_emit():
    """If a library rewords a message, the filter would miss it: fail here instead."""
    assert '"Failed to load CPU gemm_4bit_forward from kernels-community: %s.' in library_source(
        "bitsandbytes.backends.cpu.ops"
    )
    assert "Warning: Some classes do not exist in the target." in library_source(
        "torcheval.metrics.functional.classification.f1_score"
    )
    assert "LOAD REPORT" in library_source("transformers.utils.loading_report")
    quantizer = library_source("onnxruntime.quantization.onnx_quantizer")
    for start in ("Quantization parameters for tensor", "get_tensor_type returns DefaultTensorType"):
        assert start in quantizer
    assert "Ignore MatMul due to non constant B" in library_source("onnxruntime.quantization.operators.matmul")
    assert "Please consider to run pre-processing before quantization" in library_source(
        "onnxruntime.quantization.quantize"
    )


def test_the_onnx_runtime_optimizer_notes_are_dropped_and_its_warnings_kept():
    import onnxruntime.transformers.fusion_base as fusion_base

    drop = logs.DropInfoFromPackage("onnxruntime/transformers/")

    def record(level: int, pathname: str) -> logging.LogRecord:
        return logging.LogRecord("fusion_base", level, pathname, 1, "Fused Attention: 6", None, None)

    assert not drop.filter(record(logging.INFO, fusion_base.__file__))
    assert drop.filter(record(logging.WARNING, fusion_base.__file__))
    assert drop.filter(record(logging.INFO, logs.__file__))


def test_known_noise_is_dropped_and_everything_else_kept(logging_setup, caplog):
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    loading = logging.getLogger("transformers.modeling_utils")
    with caplog.at_level(logging.INFO):
        bnb.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "No module named 'kernels'"
        )
        logging.warning(
            "Warning: Some classes do not exist in the target. F1 scores for these classes will be cast to zeros."
        )
        loading.warning(NEW_HEAD_REPORT)
        bnb.warning("CUDA out of memory in gemv_4bit")
        loading.warning(NEW_HEAD_REPORT.replace("classifier.bias   | MISSING", "encoder.layer.0.w | UNEXPECTED"))
        logging.warning("Some other warning")
    assert [r.getMessage().split("\n")[0] for r in caplog.records] == [
        "CUDA out of memory in gemv_4bit",
        "BertForSequenceClassification LOAD REPORT from: /models/minilm",
        "Some other warning",
    ]


def test_library_progress_bars_are_off_when_stderr_is_not_a_terminal(logging_setup):
    import os

    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_metrics_give_no_warning_when_a_predicted_class_is_absent(caplog):
    """Only torcheval's own log line remains, which `setup_logging` drops (tested above)."""
    from emotion_predictor.evaluation.metrics import classification_metrics

    labels, predicted = np.array([0, 0, 4, 4]), np.array([0, 6, 4, 1])  # 1 and 6 predicted, never true
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        figures = classification_metrics(labels, predicted)
    assert figures["Balanced_Accuracy"] == pytest.approx(0.5)  # mean recall over the classes present
    assert not [r for r in caplog.records if "Some classes do not exist" not in r.getMessage()]


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "progress"]


def test_plain_progress_logs_each_tenth_with_time_left(caplog):
    with caplog.at_level(logging.INFO, logger="progress"):
        progress = PlainProgress("training", 50, unit="step ")
        for done in range(1, 51):
            progress.update(done, "loss 1.0000")
    lines = progress_lines(caplog)
    assert len(lines) == 10
    assert re.fullmatch(r"training: step 5/50 \(10%\), loss 1\.0000, 0m\d\ds elapsed, about 0m\d\ds left", lines[0])
    assert re.fullmatch(r"training: step 50/50 \(100%\), loss 1\.0000, 0m\d\ds elapsed", lines[-1])


def test_track_yields_every_item_and_reports_when_not_on_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="progress"):
        assert list(track(iter(range(3)), 3, "scoring model")) == [0, 1, 2]
    assert [line.split(",")[0] for line in progress_lines(caplog)] == [
        "scoring model: 1/3 (33%)",
        "scoring model: 2/3 (66%)",
        "scoring model: 3/3 (100%)",
    ]


def test_training_progress_reports_steps_evaluations_and_the_end(caplog):
    class State:
        max_steps, global_step, epoch = 4, 0, 0.0

    state, callback = State(), TrainingProgress()
    with caplog.at_level(logging.INFO, logger="progress"):
        callback.on_train_begin(None, state, None)
        for step in range(1, 5):
            state.global_step, state.epoch = step, step / 4
            callback.on_log(None, state, None, logs={"loss": 2.0 / step})
            callback.on_step_end(None, state, None)
        for _ in range(2):
            callback.on_prediction_step(None, state, None, eval_dataloader=[0, 1])
        callback.on_evaluate(None, state, None, metrics={"eval_loss": 0.5, "eval_Macro_F1": 0.25, "eval_runtime": 3.0})
        callback.on_log(None, state, None, logs={"train_runtime": 75.0, "train_loss": 1.25})
    lines = [line.split(", 0m")[0] for line in progress_lines(caplog)]
    assert lines == [
        "training: step 1/4 (25%), epoch 0.25, loss 2.0000",
        "training: step 2/4 (50%), epoch 0.50, loss 1.0000",
        "training: step 3/4 (75%), epoch 0.75, loss 0.6667",
        "training: step 4/4 (100%), epoch 1.00, loss 0.5000",
        "evaluating: batch 1/2 (50%)",
        "evaluating: batch 2/2 (100%)",
        "evaluation at step 4 (epoch 1.00): loss 0.5000, Macro_F1 0.2500",
        "training: done in 1m15s, mean loss 1.2500",
    ]


def test_trainer_off_a_terminal_logs_plain_lines_instead_of_bars_and_dicts(tmp_path, tiny_model_dir):
    from transformers import (
        AutoModelForSequenceClassification,
        PrinterCallback,
        ProgressCallback,
        Trainer,
        TrainingArguments,
    )

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    for disable_tqdm in (False, True):
        args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=disable_tqdm)
        trainer = Trainer(model=model, args=args)
        show_progress(trainer)
        kinds = {type(c) for c in trainer.callback_handler.callbacks}
        assert TrainingProgress in kinds and not kinds & {PrinterCallback, ProgressCallback}
