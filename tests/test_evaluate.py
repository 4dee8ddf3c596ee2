"""ep_evaluate.py / evaluation.py: scoring a model on a split, zero-shot label mapping, the
seen / unseen breakdown, the built-in baselines, F1-all-class weights of old and new models, the
comparison of several models, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import REAL_DATA, build_tiny_bert, cli_exit, requires_real_data
from emotion_predictor.labels import EMOTIONS, NUM_LABELS

REFERENCE_BASE_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "joy", 4: "neutral", 5: "sadness", 6: "surprise"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL_FILES = ("report.txt", "metrics.json", "predictions.csv", "confusion_matrix.png")


def evaluate(**values):
    from emotion_predictor.arguments import EvaluateArguments
    from emotion_predictor.config import build_instances
    from emotion_predictor.evaluation.evaluate import run_evaluation

    values = {"disable_tqdm": True, "device": "cpu", "baseline_cache_dir": None, **values}
    (args,), _ = build_instances(values, (EvaluateArguments,), "test", set())
    return run_evaluation(args)


def cli_error(monkeypatch, capsys, *argv: str) -> str:
    """Run ep_evaluate.py's main in-process; it must exit non-zero with one error line, returned."""
    import ep_evaluate

    argv = ("ep_evaluate.py", *argv, "--baseline_cache_dir", "null")
    _, errors = cli_exit(ep_evaluate.main, list(argv), monkeypatch, capsys)
    assert len(errors) == 1, errors
    return errors[0]


def shifted_rows(dataset_dir: str, split: str) -> tuple[list[str], np.ndarray]:
    """The next-turn rows of a DailyDialog-layout JSONL split, computed here without utils.py."""
    texts, labels = [], []
    with open(os.path.join(dataset_dir, f"{split}.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            dialogue = json.loads(line)
            texts += dialogue["utterances"][:-1]
            labels += dialogue["emotions"][1:]
    return texts, np.asarray(labels)


def shifted_labels(dataset_dir: str, split: str) -> np.ndarray:
    return shifted_rows(dataset_dir, split)[1]


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """n / (k * count_c) over the k classes present, 0 for the others (scikit-learn's "balanced")."""
    counts = np.bincount(labels, minlength=NUM_LABELS).astype(float)
    present = counts > 0
    return np.where(present, len(labels) / (present.sum() * np.maximum(counts, 1)), 0.0)


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


@pytest.fixture(scope="session")
def overlap_dataset_dir(tmp_path_factory, tiny_dataset_dir) -> str:
    """The tiny dataset whose first 8 test dialogues repeat train dialogues verbatim (as DailyDialog's do)."""
    folder = tmp_path_factory.mktemp("tiny_overlap")
    splits = {}
    for split in ("train", "validation", "test"):
        with open(os.path.join(tiny_dataset_dir, f"{split}.jsonl"), encoding="utf-8") as handle:
            splits[split] = [json.loads(line) for line in handle]
    splits["test"][:8] = [{**d, "dialog_id": 1000 + i} for i, d in enumerate(splits["train"][:8])]
    for split, rows in splits.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return str(folder)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_run_dir, zero_shot_model_dir, overlap_dataset_dir) -> str:
    """The tiny fine-tuned run, the tiny zero-shot base model and the two baselines, compared on
    the tiny test split (some of whose utterances occur in train)."""
    out = str(tmp_path_factory.mktemp("compared"))
    evaluate(
        models=[tiny_run_dir, zero_shot_model_dir],
        model_names=["fine-tuned", "zero-shot"],
        dataset=overlap_dataset_dir,
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

    from emotion_predictor.evaluation.metrics import format_report

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
    weights = np.asarray(record["f1_all_class_weights"])
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
    seen = table["seen"].to_numpy(dtype=bool)
    for group, rows in (("seen", seen), ("unseen", ~seen)):
        entry = record["seen_unseen"][group]
        assert entry["rows"] == rows.sum() > 0
        assert entry["metrics"]["Macro_F1"] == pytest.approx(
            f1_score(y_true[rows], y_pred[rows], labels=labels, average="macro", zero_division=0)
        )
    with open(os.path.join(folder, "report.txt"), encoding="utf-8") as handle:
        report = handle.read()
    assert report.startswith(format_report(y_true, y_pred, record["metrics"], "argmax", weights))
    assert f"F1-all-class weights source: {record['f1_all_class_weights_source']}" in report
    seen_line = next(line.split() for line in report.splitlines() if line.startswith("seen "))
    assert seen_line[:3] == ["seen", str(seen.sum()), f"{record['seen_unseen']['seen']['metrics']['Accuracy']:.4f}"]


def test_fine_tuned_model_brings_its_settings_and_class_weights(compared, tiny_run_dir):
    record, table = read_outputs(os.path.join(compared, "fine-tuned"))
    with open(os.path.join(tiny_run_dir, "model", "emotion_predictor.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    assert record["fine_tuned"] is True
    assert record["f1_all_class_weights"] == pytest.approx(saved["f1_all_class_weights"])
    assert record["f1_all_class_weights_source"].startswith("saved with the model")
    assert record["inputs"] == {
        "context_turns": saved["context_turns"],
        "context_separator": saved["context_separator"],
        "max_length": saved["max_length"],
    }
    assert record["head"]["mapped_by_name"] is False
    assert table.columns.tolist() == ["row_id", "dialog_id", "turn", "text", "label", "predicted", "seen"] + [
        f"prob_{n}" for n in EMOTIONS
    ]


def test_zero_shot_base_model_is_mapped_to_our_classes_by_name(compared, zero_shot_model_dir, overlap_dataset_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    record, table = read_outputs(os.path.join(compared, "zero-shot"))
    assert record["fine_tuned"] is False
    assert record["head"]["model_labels"] == list(REFERENCE_BASE_LABELS.values())
    assert record["head"]["label_mapping"]["happiness"] == "joy"
    assert record["head"]["label_mapping"]["neutral"] == "neutral"
    assert record["head"]["mapped_by_name"] is True
    # Not fine-tuned: the balanced weights of the whole train split's labels.
    assert record["f1_all_class_weights"] == pytest.approx(
        balanced_weights(shifted_labels(overlap_dataset_dir, "train"))
    )
    assert (
        "recomputed" in record["f1_all_class_weights_source"]
        and "not a fine-tuned model" in record["f1_all_class_weights_source"]
    )

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


def test_comparing_two_models_writes_one_row_each_and_valid_plots(compared, overlap_dataset_dir):
    for name in ("fine-tuned", "zero-shot"):
        for file in MODEL_FILES:
            assert os.path.isfile(os.path.join(compared, name, file)), (name, file)
        assert_valid_png(os.path.join(compared, name, "confusion_matrix.png"))
    assert_valid_png(os.path.join(compared, "comparison.png"))

    table = pd.read_csv(os.path.join(compared, "comparison.csv"), keep_default_na=False)
    assert table["model"].tolist() == [
        "fine-tuned",
        "zero-shot",
        "baseline: majority",
        "baseline: tfidf",
        "baseline: tfidf_history",
        "baseline: tfidf_history (given emotions)",
    ]
    assert table["baseline"].tolist() == [False, False, True, True, True, True]
    for name in ("fine-tuned", "zero-shot"):
        record, _ = read_outputs(os.path.join(compared, name))
        row = table[table["model"] == name].iloc[0]
        assert row["Macro_F1"] == pytest.approx(record["metrics"]["Macro_F1"])
        assert row["F1_surprise"] == pytest.approx(record["metrics"]["F1_surprise"])
    from emotion_predictor.evaluation.comparison import COMPARED

    for column in COMPARED:  # the best model(s) per column are marked, none where all tie
        winners = table.loc[table[column] == table[column].max(), "model"].tolist()
        marked = [m for m, best in zip(table["model"], table["best_in"]) if column in best.split(";")]
        assert marked == (winners if table[column].nunique() > 1 else []), column
    # The tiny data's keywords are all a bag of words needs; the random tiny models learned little.
    assert table.loc[table["Macro_F1"].idxmax(), "model"].startswith("baseline: tfidf")

    with open(os.path.join(compared, "comparison.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    assert "| fine-tuned |" in markdown and "| zero-shot |" in markdown and "**" in markdown
    assert "| baseline: tfidf *(baseline)* |" in markdown
    seen_rows = int(table["seen_rows"].iloc[0])
    assert f"seen Macro_F1 (n={seen_rows:,})" in markdown
    assert seen_rows + int(table["unseen_rows"].iloc[0]) == len(shifted_labels(overlap_dataset_dir, "test"))
    # Every row was trained on the whole tiny train split, so F1-all-class weighs them all alike.
    assert table["f1_all_class_weights"].nunique() == 1
    assert "compare these models on Macro_F1" not in markdown


def train_dialogues(dataset_dir: str) -> list[dict]:
    with open(os.path.join(dataset_dir, "train.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def baseline_records(folder: str) -> dict:
    with open(os.path.join(folder, "baselines.json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_seen_rows_are_the_test_utterances_found_verbatim_in_train(compared, overlap_dataset_dir):
    train_texts, _ = shifted_rows(overlap_dataset_dir, "train")
    test_texts, _ = shifted_rows(overlap_dataset_dir, "test")
    record, table = read_outputs(os.path.join(compared, "fine-tuned"))
    expected = [text in set(train_texts) for text in table["text"]]
    assert table["seen"].tolist() == expected
    # At least every row of the 8 repeated dialogues is seen.
    copied = sum(len(d["utterances"]) - 1 for d in train_dialogues(overlap_dataset_dir)[:8])
    assert record["seen_unseen"]["seen"]["rows"] == sum(expected) >= copied > 0
    assert record["seen_unseen"]["seen"]["rows"] + record["seen_unseen"]["unseen"]["rows"] == len(test_texts)


def test_baselines_equal_an_independent_scikit_learn_fit(compared, overlap_dataset_dir):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score

    records = baseline_records(compared)
    assert list(records) == [
        "baseline: majority",
        "baseline: tfidf",
        "baseline: tfidf_history",
        "baseline: tfidf_history (given emotions)",
    ]
    train_texts, train_labels = shifted_rows(overlap_dataset_dir, "train")
    _, table = read_outputs(os.path.join(compared, "fine-tuned"))
    y_true = table["label"].map(EMOTIONS.index).to_numpy()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(
        vectorizer.fit_transform(train_texts), train_labels
    )
    expected = {
        "baseline: majority": np.full(len(y_true), np.bincount(train_labels).argmax()),
        # The tiny run decides by argmax, so its baselines do too.
        "baseline: tfidf": model.predict(vectorizer.transform(table["text"])),
    }
    for name, predicted in expected.items():
        record = records[name]
        assert record["baseline"] is True and record["decision_rule"] == "argmax"
        assert record["train_rows"] == len(train_labels) and record["rows"] == len(y_true)
        assert record["f1_all_class_weights"] == pytest.approx(balanced_weights(train_labels))
        assert record["metrics"]["Macro_F1"] == pytest.approx(
            f1_score(y_true, predicted, labels=range(7), average="macro")
        )
        assert record["metrics"]["Balanced_Accuracy"] == pytest.approx(balanced_accuracy_score(y_true, predicted))
    assert records["baseline: majority"]["metrics"]["Classes-with-value"] == 1


def test_report_says_by_how_much_the_model_beats_or_trails_the_best_baseline(compared):
    records = baseline_records(compared)
    record, _ = read_outputs(os.path.join(compared, "fine-tuned"))
    with open(os.path.join(compared, "fine-tuned", "report.txt"), encoding="utf-8") as handle:
        report = handle.read()
    for metric in ("Balanced_Accuracy", "Macro_F1"):
        same_mode = [name for name in records if records[name]["emotions"] == record["emotions"]]
        best = max(same_mode, key=lambda name: records[name]["metrics"][metric])
        margin = record["metrics"][metric] - records[best]["metrics"][metric]
        assert record["versus_best_baseline"][metric] == pytest.approx(
            {"baseline": best, "baseline_value": records[best]["metrics"][metric], "margin": margin}
        )
        verb = "beats" if margin > 0 else "trails" if margin < 0 else "ties"
        assert f"{metric}: {verb} {best} ({records[best]['metrics'][metric]:.4f}) by {abs(margin):.4f}" in report


@pytest.fixture(scope="module")
def old_prior_corrected_run(tmp_path_factory, tiny_run_dir) -> str:
    """The tiny run as a model fine-tuned before F1-all-class weights were saved, with half the
    neutral train rows and the prior_corrected rule (accuracy floor 0.3)."""
    import shutil

    out = str(tmp_path_factory.mktemp("old_run") / "run")
    shutil.copytree(tiny_run_dir, out, ignore=shutil.ignore_patterns("checkpoints"))
    path = os.path.join(out, "model", "emotion_predictor.json")
    with open(path, encoding="utf-8") as handle:
        metadata = json.load(handle)
    del metadata["f1_all_class_weights"]
    metadata.update(
        decision_rule="prior_corrected",
        tau=0.5,
        train_prior=[1 / 7] * 7,
        decision_metric="Macro_F1",
        decision_min_accuracy=0.3,
    )
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle)
    with open(os.path.join(out, "run_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    with open(os.path.join(out, "run_config.json"), "w", encoding="utf-8") as handle:
        json.dump({**config, "neutral_keep_ratio": 0.5, "max_eval_samples": 40}, handle)
    return out


def test_old_model_gets_weights_recomputed_from_its_train_recipe_and_baselines_follow_it(
    tmp_path, old_prior_corrected_run, overlap_dataset_dir
):
    from emotion_predictor.prediction.decision import TAU_GRID

    evaluate(models=f"{old_prior_corrected_run}/model", dataset=overlap_dataset_dir, output_dir=str(tmp_path))
    record, _ = read_outputs(str(tmp_path))
    labels = shifted_labels(overlap_dataset_dir, "train")
    kept_neutral = int(np.floor((labels == 0).sum() * 0.5 + 0.5))  # downsample_neutral's count
    kept = np.concatenate([labels[labels != 0], np.zeros(kept_neutral, dtype=int)])
    assert record["f1_all_class_weights"] == pytest.approx(balanced_weights(kept))
    source = record["f1_all_class_weights_source"]
    assert "recomputed" in source and "fine-tuned before" in source and "neutral_keep_ratio 0.5" in source
    with open(tmp_path / "report.txt", encoding="utf-8") as handle:
        assert source in handle.read()

    tfidf = baseline_records(str(tmp_path))["baseline: tfidf"]
    assert tfidf["train_rows"] == len(kept)
    assert tfidf["validation_rows"] == 40
    assert tfidf["decision_rule"] == "prior_corrected" and tfidf["tau"] in TAU_GRID
    assert "subject to validation accuracy >= 0.3" in tfidf["decision"]
    assert "run_config.json" in tfidf["train_recipe"]
    assert baseline_records(str(tmp_path))["baseline: majority"]["decision_rule"] == "argmax"
    # One model and two baselines make a comparison of three rows.
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert table["model"].tolist() == [
        "run-model",
        "baseline: majority",
        "baseline: tfidf",
        "baseline: tfidf_history",
        "baseline: tfidf_history (given emotions)",
    ]


def test_baselines_are_cached_and_can_be_skipped(tmp_path, tiny_run_dir, overlap_dataset_dir):
    cache = tmp_path / "cache"
    runs = []
    for number in (1, 2):
        evaluate(
            models=tiny_run_dir,
            dataset=overlap_dataset_dir,
            output_dir=str(tmp_path / f"run{number}"),
            baselines=["tfidf"],
            baseline_cache_dir=str(cache),
        )
        runs.append(baseline_records(str(tmp_path / f"run{number}"))["baseline: tfidf"])
    assert [r["timing"]["cached"] for r in runs] == [False, True]
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert len(list(cache.glob("tfidf-*.npz"))) == 1

    evaluate(models=tiny_run_dir, dataset=overlap_dataset_dir, output_dir=str(tmp_path / "none"), baselines=[])
    assert sorted(os.listdir(tmp_path / "none")) == sorted(MODEL_FILES)
    record, _ = read_outputs(str(tmp_path / "none"))
    assert record["versus_best_baseline"] is None


def test_onnx_runtime_scores_like_torch(tmp_path, tiny_run_dir, overlap_dataset_dir):
    records = {}
    for runtime in ("torch", "onnx"):
        folder = str(tmp_path / runtime)
        evaluate(models=tiny_run_dir, dataset=overlap_dataset_dir, output_dir=folder, baselines=[], runtime=runtime)
        records[runtime] = read_outputs(folder)
    (torch_record, torch_rows), (onnx_record, onnx_rows) = records["torch"], records["onnx"]
    assert (torch_record["timing"]["runtime"], onnx_record["timing"]["runtime"]) == ("torch", "onnx")
    assert onnx_record["metrics"] == torch_record["metrics"]
    columns = [c for c in torch_rows.columns if c.startswith("prob_")]
    assert len(columns) == NUM_LABELS
    np.testing.assert_allclose(onnx_rows[columns].to_numpy(), torch_rows[columns].to_numpy(), rtol=0, atol=1e-5)


@requires_real_data
def test_real_test_split_supports(tmp_path, tiny_run_dir):
    # tfidf_history's out-of-fold recognisers on the whole train split would take minutes; tests/
    # test_trajectory.py checks it on tiny data.
    evaluate(
        models=tiny_run_dir,
        dataset=REAL_DATA,
        split="test",
        batch_size=256,
        output_dir=str(tmp_path),
        baselines=["majority", "tfidf"],
    )
    record, table = read_outputs(str(tmp_path))
    supports = [record["per_class"][n]["support"] for n in EMOTIONS]
    assert supports == [5454, 102, 41, 14, 927, 94, 108] and all(isinstance(s, int) for s in supports)
    assert record["rows"] == len(table) == 6740
    with open(tmp_path / "report.txt", encoding="utf-8") as handle:
        report = handle.read()
    for name, support in zip(EMOTIONS, supports):
        assert any(line.split()[:1] == [name] and line.split()[-1] == str(support) for line in report.splitlines())
    assert all(
        f"{name}:" in report
        for name in ("Accuracy", "Balanced_Accuracy", "F1-score", "Macro_F1", "F1-all-class", "Classes-with-value")
    )

    # Seen / unseen: the counts add up, and match the train utterances read here without utils.py.
    train_texts, train_labels = shifted_rows(REAL_DATA, "train")
    seen = table["text"].isin(set(train_texts)).to_numpy()
    groups = record["seen_unseen"]
    assert groups["seen"]["rows"] == seen.sum() and groups["seen"]["rows"] + groups["unseen"]["rows"] == 6740
    assert (table["seen"].to_numpy(dtype=bool) == seen).all()

    # The TF-IDF baseline (the tiny run decides by argmax on the full train split) against an
    # independent scikit-learn fit of the same recipe.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(
        vectorizer.fit_transform(train_texts), train_labels
    )
    y_true = table["label"].map(EMOTIONS.index).to_numpy()
    predicted = model.predict(vectorizer.transform(table["text"]))
    tfidf = baseline_records(str(tmp_path))["baseline: tfidf"]
    assert abs(tfidf["metrics"]["Macro_F1"] - f1_score(y_true, predicted, average="macro")) < 0.02
    assert abs(tfidf["metrics"]["Balanced_Accuracy"] - balanced_accuracy_score(y_true, predicted)) < 0.02
    assert (
        abs(
            tfidf["seen_unseen"]["unseen"]["metrics"]["Macro_F1"]
            - f1_score(y_true[~seen], predicted[~seen], labels=range(7), average="macro")
        )
        < 0.02
    )


def test_unmappable_head_and_non_model_folder_are_one_line_errors(tmp_path, tiny_dataset_dir):
    from emotion_predictor.errors import UserError

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
        (["--baselines", '["knn"]'], "key 'baselines'"),
        (["--baselines", '["tfidf","tfidf"]'], "lists a baseline twice"),
        (["--runtime", "tensorrt"], "key 'runtime'"),
        (["--runtime", "onnx_int8", "--device", "cuda"], "runtime onnx_int8 runs on the CPU, not device cuda"),
    ],
)
def test_cli_config_and_missing_folder_errors(
    tmp_path, tiny_dataset_dir, zero_shot_model_dir, overrides, expected, monkeypatch, capsys
):
    base = {"--models": zero_shot_model_dir, "--dataset": tiny_dataset_dir, "--output_dir": str(tmp_path)}
    base.update(dict(zip(overrides[::2], overrides[1::2], strict=True)))
    line = cli_error(monkeypatch, capsys, *[part for pair in base.items() for part in pair])
    assert expected in line


def test_cli_failure_on_second_model_keeps_the_first_models_outputs(
    tmp_path, tiny_dataset_dir, zero_shot_model_dir, tiny_model_dir, monkeypatch, capsys
):
    line = cli_error(
        monkeypatch,
        capsys,
        "--models",
        f"{zero_shot_model_dir},{tiny_model_dir}",
        "--model_names",
        "good,two-labels",
        "--dataset",
        tiny_dataset_dir,
        "--output_dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--disable_tqdm",
        "true",
    )
    assert "model 2 of 2" in line and "2 output labels" in line and "kept" in line
    for file in MODEL_FILES:
        assert os.path.isfile(tmp_path / "good" / file), file
    assert not (tmp_path / "two-labels").exists() or not os.listdir(tmp_path / "two-labels")
    assert not (tmp_path / "comparison.csv").exists()


def test_cli_uncached_hub_model_is_one_error_line(tmp_path, tiny_dataset_dir, monkeypatch, capsys):
    line = cli_error(
        monkeypatch,
        capsys,
        "--models",
        "no-such-org/no-such-emotion-model",
        "--dataset",
        tiny_dataset_dir,
        "--output_dir",
        str(tmp_path),
    )
    assert "no-such-org/no-such-emotion-model" in line and "cache" in line
