"""EmotionPredictor (predictor.py), ep_predict.py (predict_io.py): inputs as in evaluation, clear errors, both modes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

EXAMPLE = os.path.join(ROOT, "docs", "predictor_example.py")
QUICKSTART = os.path.join(ROOT, "runs", "quickstart")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def predictor(tiny_run_dir):
    from emotion_predictor.prediction.predictor import EmotionPredictor

    return EmotionPredictor.from_pretrained(tiny_run_dir, device="cpu")


@pytest.fixture(scope="module")
def context2_model(tiny_run_dir, tmp_path_factory) -> str:
    """The tiny run's model saved as trained with context_turns 2 and a max_length that truncates."""
    folder = str(tmp_path_factory.mktemp("context2") / "model")
    shutil.copytree(os.path.join(tiny_run_dir, "model"), folder)
    path = os.path.join(folder, "emotion_predictor.json")
    with open(path, encoding="utf-8") as handle:
        metadata = json.load(handle)
    metadata.update(context_turns=2, max_length=20)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle)
    return folder


def dialogue_prefixes(dataset_dir: str, frame) -> list[list[str]]:
    """For each prepared row, the whole dialogue up to and including its current utterance."""
    with open(os.path.join(dataset_dir, "test.jsonl"), encoding="utf-8") as handle:
        dialogues = {d["dialog_id"]: d["utterances"] for d in map(json.loads, handle)}
    return [dialogues[d][: t + 1] for d, t in zip(frame["dialog_id"], frame["turn"])]


@pytest.mark.parametrize("which", ["output_dir_context0", "model_folder_context2_truncating"])
def test_predict_equals_evaluation_path(which, tiny_run_dir, context2_model, tiny_dataset_dir):
    from emotion_predictor.data.inputs import encode_turns
    from emotion_predictor.data.utils import prepare_splits
    from emotion_predictor.labels import EMOTIONS
    from emotion_predictor.prediction.forecast import predict_proba
    from emotion_predictor.prediction.inference import load_classifier
    from emotion_predictor.prediction.predictor import EmotionPredictor

    path = tiny_run_dir if which == "output_dir_context0" else context2_model
    predictor = EmotionPredictor.from_pretrained(path, device="cpu")
    context = 0 if which == "output_dir_context0" else 2
    assert predictor.context_turns == context
    classifier = load_classifier(path, device="cpu")
    rows = prepare_splits(tiny_dataset_dir, splits=("test",), context_turns=context).splits["test"]
    expected = predict_proba(classifier, rows["turns"].tolist(), batch_size=16)
    histories = dialogue_prefixes(tiny_dataset_dir, rows)
    assert max(map(len, histories)) > context + 1  # some histories are longer than the window

    single = np.array([list(predictor.predict(h).probabilities.values()) for h in histories])
    batch = predictor.predict_batch(histories, batch_size=7)
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose([list(f.probabilities.values()) for f in batch], expected, rtol=0, atol=1e-5)
    assert [f.label for f in batch] == [EMOTIONS[i] for i in expected.argmax(axis=1)]
    assert list(batch[0].probabilities) == EMOTIONS
    assert all(abs(sum(f.probabilities.values()) - 1) < 1e-5 for f in batch)
    if context == 2:  # the case really exercises truncation of the oldest context tokens
        ids = encode_turns(classifier.tokenizer, rows["turns"].tolist(), predictor.separator, 1000)
        assert predictor.max_length == 20 and max(map(len, ids)) > 20


def test_reads_saved_settings_from_output_dir_and_model_folder(tiny_run_dir, predictor):
    from emotion_predictor.modeling.sequence_classifier import read_metadata
    from emotion_predictor.prediction.predictor import EmotionPredictor

    saved = read_metadata(os.path.join(tiny_run_dir, "model"))
    assert (predictor.context_turns, predictor.separator, predictor.max_length, predictor.decision_rule) == (
        saved["context_turns"],
        saved["context_separator"],
        saved["max_length"],
        "argmax",
    )
    assert predictor.separator == " [SEP] " and predictor.device == "cpu"
    from_model = EmotionPredictor.from_pretrained(os.path.join(tiny_run_dir, "model"), device="cpu")
    history = ["hi how are you", "i lost my keys"]
    assert from_model.predict(history) == predictor.predict(history)
    assert "context_turns=0" in repr(predictor)


def test_forecast_result(predictor):
    forecast = predictor.predict(("hello", "sad sorry"))
    assert forecast.label == max(forecast.probabilities, key=forecast.probabilities.get)
    data = forecast.to_dict(decimals=3)
    assert data["label"] == forecast.label and len(data["probabilities"]) == 7
    assert all(round(p, 3) == p for p in data["probabilities"].values())
    assert str(forecast).startswith(f"{forecast.label}  ({forecast.label} ")
    assert predictor.predict_batch([]) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: p.predict([]), "history is empty; pass the dialogue so far"),
        (
            lambda p: p.predict("I lost my keys"),
            'history is a single string; pass a list of utterances, oldest first, e.g. ["I lost my keys"]',
        ),
        (lambda p: p.predict(["hi", 3]), "history[1] is 3 (int), not a string"),
        (lambda p: p.predict(None), "history must be a list of utterances (strings), oldest first, not NoneType"),
        (lambda p: p.predict_batch([["hi"], ["ok", None]]), "histories[1][1] is null (NoneType), not a string"),
        (lambda p: p.predict_batch("hi"), "histories must be a list of histories"),
    ],
)
def test_bad_history_gets_one_clear_message(predictor, call, message):
    from emotion_predictor.errors import UserError

    with pytest.raises(UserError) as caught:
        call(predictor)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_folder_that_is_not_our_model_is_refused(tmp_path, tiny_model_dir, tiny_run_dir):
    from emotion_predictor.errors import UserError
    from emotion_predictor.prediction.predictor import EmotionPredictor

    with pytest.raises(UserError, match="is not a model folder"):
        EmotionPredictor.from_pretrained(str(tmp_path), device="cpu")
    with pytest.raises(UserError, match="has 2 output labels .* needs 7"):
        EmotionPredictor.from_pretrained(tiny_model_dir, device="cpu")
    odd = tmp_path / "odd"
    shutil.copytree(os.path.join(tiny_run_dir, "model"), odd)
    metadata = json.loads((odd / "emotion_predictor.json").read_text())
    (odd / "emotion_predictor.json").write_text(json.dumps({**metadata, "decision_rule": "coin_flip"}))
    problem = 'decision_rule has value "coin_flip"; expected one of "argmax", "prior_corrected"'
    with pytest.raises(UserError, match=f"emotion_predictor.json: {problem}"):
        EmotionPredictor.from_pretrained(str(odd), device="cpu")


def test_saved_prior_corrected_rule_decides_the_label(tiny_run_dir, tmp_path):
    from emotion_predictor.labels import EMOTIONS
    from emotion_predictor.prediction.predictor import EmotionPredictor

    folder = tmp_path / "prior"
    shutil.copytree(os.path.join(tiny_run_dir, "model"), folder)
    metadata = json.loads((folder / "emotion_predictor.json").read_text())
    prior = [0.94, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]
    (folder / "emotion_predictor.json").write_text(
        json.dumps({**metadata, "decision_rule": "prior_corrected", "tau": 1.0, "train_prior": prior})
    )
    corrected = EmotionPredictor.from_pretrained(str(folder), device="cpu")
    plain = EmotionPredictor.from_pretrained(tiny_run_dir, device="cpu")
    assert corrected.decision_rule == "prior_corrected"
    histories = [["hello"], ["i lost my keys"], ["great party tonight", "wow really"]]
    for ours, theirs in zip(corrected.predict_batch(histories), plain.predict_batch(histories)):
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-6)  # the rule changes only the label
        scores = np.log(list(ours.probabilities.values())) - np.log(prior)
        assert ours.label == EMOTIONS[int(np.argmax(scores))] != "neutral"


def test_file_mode_skips_and_reports_bad_lines(tmp_path, tiny_run_dir, predictor, capsys):
    import ep_predict

    lines = [
        json.dumps({"id": "a", "history": ["hello", "i lost my keys"]}),
        "{not json",
        json.dumps({"id": "b", "history": []}),
        "",
        json.dumps({"history": ["wow really"]}),
        json.dumps({"id": "c", "history": ["ok", 5]}),
        json.dumps(["no", "object"]),
        json.dumps({"id": 7, "history": ["great party tonight"]}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    target = tmp_path / "out" / "forecasts.jsonl"
    args = [
        "--json_file",
        os.path.join(ROOT, "args", "ep_predict_arg.json"),
        "--model",
        tiny_run_dir,
        "--input",
        str(source),
        "--output",
        str(target),
        "--device",
        "cpu",
        "--batch_size",
        "2",
    ]
    assert ep_predict.main(args) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error: ", "wrote "))]
    assert errors[:4] == [
        f"error: {source}:2: malformed JSON (Expecting property name enclosed in double quotes at column 2); "
        "fix or remove that line",
        f"error: {source}:3: history is empty; pass the dialogue so far, at least one utterance",
        f"error: {source}:6: history[1] is 5 (int), not a string; each turn is one utterance's text",
        f'error: {source}:7: expected an object {{"id": ..., "history": ["utterance", ...]}}',
    ]
    assert errors[4] == f"wrote 3 forecasts to {target}; 4 lines failed (see above)"
    results = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in results] == ["a", 5, 7]  # the line number stands in for a missing id
    for result, history in zip(results, (["hello", "i lost my keys"], ["wow really"], ["great party tonight"])):
        expected = predictor.predict(history)
        assert result["label"] == expected.label
        assert result["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)

    source.write_text(lines[0] + "\n")
    assert ep_predict.main(args) == 0
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == ["a"]


def test_config_errors_are_one_line(tmp_path, tiny_model_dir):
    import ep_predict
    from emotion_predictor.errors import ConfigError, UserError

    base = ["--json_file", os.path.join(ROOT, "args", "ep_predict_arg.json")]
    with pytest.raises(ConfigError, match="key 'input' has value \"missing.jsonl\": no such file"):
        ep_predict.main([*base, "--input", "missing.jsonl"])
    with pytest.raises(ConfigError, match="key 'device' .* expected auto, cpu, cuda or cuda:N"):
        ep_predict.main([*base, "--input", "-", "--device", "gpu"])
    with pytest.raises(UserError, match="has 2 output labels"):
        ep_predict.main([*base, "--input", "-", "--model", tiny_model_dir])


def test_converse_keeps_history_and_resets(predictor):
    from emotion_predictor.prediction.predict_io import converse

    out = io.StringIO()
    count = converse(predictor, io.StringIO("hello\n\ni lost my keys\n/reset\ni lost my keys\n"), out)
    lines = out.getvalue().splitlines()
    assert count == 3 and lines[2] == "-- new conversation --"
    assert lines[0] == f"next turn: {predictor.predict(['hello'])}"
    assert lines[1] == f"next turn: {predictor.predict(['hello', 'i lost my keys'])}"
    assert lines[3] == f"next turn: {predictor.predict(['i lost my keys'])}"


def test_interactive_mode_from_a_pipe(tiny_run_dir, predictor):
    command = [
        sys.executable,
        "ep_predict.py",
        "--json_file",
        "args/ep_predict_arg.json",
        "--model",
        tiny_run_dir,
        "--input",
        "-",
        "--device",
        "cpu",
    ]
    done = subprocess.run(
        command, input="Hi\nI lost my keys\n", capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"next turn: {predictor.predict(['Hi'])}",
        f"next turn: {predictor.predict(['Hi', 'I lost my keys'])}",
    ]
    assert "Traceback" not in done.stderr


def test_exit_codes_and_one_error_line_through_run_main(tmp_path, tiny_run_dir, capsys):
    import ep_predict
    from emotion_predictor.errors import run_main

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "history": ["hello"]}\n{"id": 2, "history": "hello"}\n')
    base = ["--json_file", os.path.join(ROOT, "args", "ep_predict_arg.json"), "--device", "cpu", "--output", "-"]
    with pytest.raises(SystemExit) as exited:
        run_main(lambda: ep_predict.main([*base, "--model", tiny_run_dir, "--input", str(source)]))
    captured = capsys.readouterr()
    assert exited.value.code == 1
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == [1]
    assert [line for line in captured.err.splitlines() if line.startswith("error: ")] == [
        f'error: {source}:2: history is a single string; pass a list of utterances, oldest first, e.g. ["hello"]'
    ]
    with pytest.raises(SystemExit) as exited:
        run_main(lambda: ep_predict.main([*base, "--model", str(tmp_path), "--input", str(source)]))
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith(f"error: {str(tmp_path)!r} is not a model folder")


def example_source(model_path: str) -> str:
    with open(EXAMPLE, encoding="utf-8") as handle:
        source = handle.read()
    assert '"runs/quickstart"' in source
    return source.replace('"runs/quickstart"', json.dumps(model_path))


def test_readme_example_runs(tiny_run_dir, capsys, monkeypatch):
    from emotion_predictor.labels import EMOTIONS

    quickstart_ready = os.path.isfile(os.path.join(QUICKSTART, "model", "config.json"))
    monkeypatch.chdir(ROOT)
    exec(compile(example_source("runs/quickstart" if quickstart_ready else tiny_run_dir), EXAMPLE, "exec"), {})
    label, probabilities = capsys.readouterr().out.strip().split(" ", 1)
    assert label in EMOTIONS and all(name in probabilities for name in EMOTIONS)


def test_readme_shows_the_predictor_example():
    """README.md carries docs/predictor_example.py verbatim, so the documented example is the tested one."""
    with open(EXAMPLE, encoding="utf-8") as handle:
        example = handle.read().strip()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert example in readme


def test_a_lora_models_embeddings_are_its_encoders(tiny_model_dir):
    """A PEFT model's `base_model` is its LoRA wrapper, whose output is the classifier's: the
    embeddings (a knn memory's keys, during a LoRA run) come from the encoder inside it."""
    import torch
    from transformers import AutoTokenizer

    from emotion_predictor.arguments import ModelArguments
    from emotion_predictor.modeling.sequence_classifier import apply_lora, load_base_model
    from emotion_predictor.prediction.inference import Classifier, model_outputs

    model, _ = load_base_model(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # Random LoRA weights (B != 0): the adapted encoder differs from the base model's.
    adapted = apply_lora(model, ModelArguments(model_name_or_path="tiny", lora_rank=4, init_lora_weights=False))
    turns = [["hello how are you"], ["i lost my keys", "sorry sad"]]

    def outputs(classifier_model):
        classifier = Classifier(
            classifier_model.eval(), tokenizer, "tiny", 0, " [SEP] ", 32, list(range(7)), torch.device("cpu")
        )
        return model_outputs(classifier, turns, embed=True)

    wrapped_probs, wrapped_embeddings = outputs(adapted)
    merged_probs, merged_embeddings = outputs(adapted.merge_and_unload())
    assert wrapped_embeddings.shape == (2, 32)
    np.testing.assert_allclose(wrapped_embeddings, merged_embeddings, rtol=0, atol=1e-5)
    np.testing.assert_allclose(wrapped_probs, merged_probs, rtol=0, atol=1e-6)
