"""ep_evaluate.py / evaluation.py: scoring a model on a split, zero-shot label mapping, the
comparison of several models, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA, ROOT, build_tiny_bert, requires_real_data

from labels import EMOTIONS, NUM_LABELS

REFERENCE_BASE_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "joy", 4: "neutral", 5: "sadness", 6: "surprise"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL_FILES = ("report.txt", "metrics.json", "predictions.csv", "confusion_matrix.png")


def evaluate(**values):
    from arguments import EvaluateArguments
    from config import build_instances
    from evaluation import run_evaluation

    (args,), _ = build_instances({"disable_tqdm": True, "device": "cpu", **values}, (EvaluateArguments,), "test", set())
    return run_evaluation(args)


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "ep_evaluate.py", *argv],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def read_outputs(folder: str) -> tuple[dict, pd.DataFrame]:
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    return record, pd.read_csv(os.path.join(folder, "predictions.csv"), keep_default_na=False)


def assert_valid_png(path: str) -> None:
    import matplotlib.image

    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0


@pytest.fixture(scope="session")
def zero_shot_model_dir(tmp_path_factory) -> str:
    """A tiny base model whose 7-emotion head is in the reference base model's label order."""
    return build_tiny_bert(str(tmp_path_factory.mktemp("tiny_reference_base")), id2label=REFERENCE_BASE_LABELS, seed=3)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_run_dir, zero_shot_model_dir, tiny_dataset_dir) -> str:
    """The tiny fine-tuned run and the tiny zero-shot base model, compared on the tiny test split."""
    out = str(tmp_path_factory.mktemp("compared"))
    evaluate(
        models=[tiny_run_dir, zero_shot_model_dir],
        model_names=["fine-tuned", "zero-shot"],
        dataset=tiny_dataset_dir,
        batch_size=8,
        output_dir=out,
    )
    return out


@pytest.mark.parametrize("name", ["fine-tuned", "zero-shot"])
def test_every_figure_in_metrics_json_is_recomputed_from_predictions_csv(compared, name):
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
    )

    from metrics import format_report

    folder = os.path.join(compared, name)
    record, table = read_outputs(folder)
    y_true = table["label"].map(EMOTIONS.index).to_numpy()
    y_pred = table["predicted"].map(EMOTIONS.index).to_numpy()
    probs = table[[f"prob_{n}" for n in EMOTIONS]].to_numpy()
    assert len(table) == record["rows"] and list(table["row_id"]) == list(range(len(table)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (y_pred == probs.argmax(axis=1)).all()

    labels = list(range(NUM_LABELS))
    per_class_f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    weights = np.asarray(record["class_weights"])
    expected = {
        "Accuracy": accuracy_score(y_true, y_pred),
        "Balanced_Accuracy": balanced_accuracy_score(y_true, y_pred),
        "F1-score": f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
        "Macro_F1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "F1-all-class": float(np.mean(per_class_f1 * weights)),
        "Classes-with-value": int(np.count_nonzero(per_class_f1 * weights)),
        **{f"F1_{n}": per_class_f1[i] for i, n in enumerate(EMOTIONS)},
    }
    assert record["metrics"].keys() == expected.keys()
    for key, value in expected.items():
        assert record["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=EMOTIONS, output_dict=True, zero_division=0
    )
    for class_name in EMOTIONS:
        assert record["per_class"][class_name] == pytest.approx(report[class_name], rel=1e-9), class_name
    for average in ("macro avg", "weighted avg"):
        assert record["averages"][average] == pytest.approx(report[average], rel=1e-9), average
    assert record["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    with open(os.path.join(folder, "report.txt"), encoding="utf-8") as handle:
        assert handle.read() == format_report(y_true, y_pred, record["metrics"], "argmax")


def test_fine_tuned_model_brings_its_settings_and_class_weights(compared, tiny_run_dir):
    record, table = read_outputs(os.path.join(compared, "fine-tuned"))
    with open(os.path.join(tiny_run_dir, "model", "emotion_predictor.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    assert record["fine_tuned"] is True
    assert record["class_weights"] == pytest.approx(saved["class_weights"])
    assert record["class_weights_source"].startswith("model metadata")
    assert record["inputs"] == {
        "context_turns": saved["context_turns"],
        "context_separator": saved["context_separator"],
        "max_length": saved["max_length"],
    }
    assert record["head"]["mapped_by_name"] is False
    assert table.columns.tolist() == ["row_id", "dialog_id", "turn", "text", "label", "predicted"] + [
        f"prob_{n}" for n in EMOTIONS
    ]


def test_zero_shot_base_model_is_mapped_to_our_classes_by_name(compared, zero_shot_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    record, table = read_outputs(os.path.join(compared, "zero-shot"))
    assert record["fine_tuned"] is False
    assert record["head"]["model_labels"] == list(REFERENCE_BASE_LABELS.values())
    assert record["head"]["label_mapping"]["happiness"] == "joy"
    assert record["head"]["label_mapping"]["neutral"] == "neutral"
    assert record["head"]["mapped_by_name"] is True
    assert record["class_weights"] == [1.0] * NUM_LABELS and "all ones" in record["class_weights_source"]

    # The model's own softmax, computed row by row here, reordered by label name.
    model = AutoModelForSequenceClassification.from_pretrained(zero_shot_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(zero_shot_model_dir)
    their_index = {name: index for index, name in REFERENCE_BASE_LABELS.items()}
    columns = [their_index["joy" if ours == "happiness" else ours] for ours in EMOTIONS]
    assert columns == [4, 0, 1, 2, 3, 5, 6]
    max_length = record["inputs"]["max_length"]
    with torch.inference_mode():
        for _, row in table.iterrows():
            inputs = tokenizer(row["text"], truncation=True, max_length=max_length, return_tensors="pt")
            softmax = torch.softmax(model(**inputs).logits[0], dim=-1).numpy()
            expected = softmax[columns]
            np.testing.assert_allclose(row[[f"prob_{n}" for n in EMOTIONS]].to_numpy(float), expected, atol=1e-5)
    assert (table["prob_happiness"].to_numpy() != table["prob_anger"].to_numpy()).any()


def test_comparing_two_models_writes_one_row_each_and_valid_plots(compared):
    for name in ("fine-tuned", "zero-shot"):
        for file in MODEL_FILES:
            assert os.path.isfile(os.path.join(compared, name, file)), (name, file)
        assert_valid_png(os.path.join(compared, name, "confusion_matrix.png"))
    assert_valid_png(os.path.join(compared, "comparison.png"))

    table = pd.read_csv(os.path.join(compared, "comparison.csv"), keep_default_na=False)
    assert table["model"].tolist() == ["fine-tuned", "zero-shot"]
    for name in ("fine-tuned", "zero-shot"):
        record, _ = read_outputs(os.path.join(compared, name))
        row = table[table["model"] == name].iloc[0]
        assert row["Macro_F1"] == pytest.approx(record["metrics"]["Macro_F1"])
        assert row["F1_surprise"] == pytest.approx(record["metrics"]["F1_surprise"])
    from evaluation import COMPARED

    for column in COMPARED:  # the best model(s) per column are marked, none where all tie
        winners = table.loc[table[column] == table[column].max(), "model"].tolist()
        marked = [m for m, best in zip(table["model"], table["best_in"]) if column in best.split(";")]
        assert marked == (winners if table[column].nunique() > 1 else []), column
    assert table["Macro_F1"].nunique() == 2  # the two random tiny models do differ

    with open(os.path.join(compared, "comparison.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    assert "| fine-tuned |" in markdown and "| zero-shot |" in markdown and "**" in markdown
    # The two models' F1-all-class use different class weights, and the markdown says so.
    assert "compare these models on Macro_F1" in markdown


@requires_real_data
def test_real_test_split_supports(tmp_path, tiny_run_dir):
    evaluate(models=tiny_run_dir, dataset=REAL_DATA, split="test", batch_size=256, output_dir=str(tmp_path))
    record, table = read_outputs(str(tmp_path))
    supports = [record["per_class"][n]["support"] for n in EMOTIONS]
    assert supports == [5454, 102, 41, 14, 927, 94, 108] and all(isinstance(s, int) for s in supports)
    assert record["rows"] == len(table) == 6740
    with open(tmp_path / "report.txt", encoding="utf-8") as handle:
        report = handle.read()
    for name, support in zip(EMOTIONS, supports):
        assert any(line.split()[:1] == [name] and line.split()[-1] == str(support) for line in report.splitlines())
    assert all(f"{name}:" in report for name in ("Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1",
                                                  "F1-all-class", "Classes-with-value"))


def test_unmappable_head_and_non_model_folder_are_one_line_errors(tmp_path, tiny_dataset_dir):
    from errors import UserError

    odd = build_tiny_bert(str(tmp_path / "odd"), id2label={i: f"mood_{i}" for i in range(NUM_LABELS)})
    with pytest.raises(UserError) as caught:
        evaluate(models=odd, dataset=tiny_dataset_dir, output_dir=str(tmp_path / "out"))
    message = str(caught.value)
    assert "\n" not in message
    assert "mood_0, mood_1" in message and ", ".join(EMOTIONS) in message

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        evaluate(models=str(tmp_path / "empty"), dataset=tiny_dataset_dir, output_dir=str(tmp_path / "out"))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["--models", "no/such/model_folder"], "does not exist"),
        (["--split", "dev"], "key 'split'"),
        (["--model_names", "a,b"], "2 names for 1 models"),
    ],
)
def test_cli_config_and_missing_folder_errors(tmp_path, tiny_dataset_dir, zero_shot_model_dir, overrides, expected):
    base = {"--models": zero_shot_model_dir, "--dataset": tiny_dataset_dir, "--output_dir": str(tmp_path)}
    base.update(dict(zip(overrides[::2], overrides[1::2])))
    line = assert_one_error_line(run_cli(*[part for pair in base.items() for part in pair]))
    assert expected in line


def test_cli_failure_on_second_model_keeps_the_first_models_outputs(
    tmp_path, tiny_dataset_dir, zero_shot_model_dir, tiny_model_dir
):
    result = run_cli(
        "--models", f"{zero_shot_model_dir},{tiny_model_dir}",
        "--model_names", "good,two-labels",
        "--dataset", tiny_dataset_dir,
        "--output_dir", str(tmp_path),
        "--device", "cpu",
        "--disable_tqdm", "true",
    )
    line = assert_one_error_line(result)
    assert "model 2 of 2" in line and "2 output labels" in line and "kept" in line
    for file in MODEL_FILES:
        assert os.path.isfile(tmp_path / "good" / file), file
    assert not (tmp_path / "two-labels").exists() or not os.listdir(tmp_path / "two-labels")
    assert not (tmp_path / "comparison.csv").exists()


def test_cli_uncached_hub_model_is_one_error_line(tmp_path, tiny_dataset_dir):
    line = assert_one_error_line(
        run_cli("--models", "no-such-org/no-such-emotion-model", "--dataset", tiny_dataset_dir, "--output_dir", str(tmp_path))
    )
    assert "no-such-org/no-such-emotion-model" in line and "cache" in line
