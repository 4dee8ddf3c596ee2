"""ONNX export (onnx_export.py, ep-export-onnx) and ONNX Runtime inference (onnx_runtime.py): the
same forecasts and embeddings as torch, the int8 copy, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import ROOT, build_tiny_bert, build_tokenizer, cli_error_lines
from emotion_predictor.errors import ConfigError, UserError
from emotion_predictor.labels import EMOTIONS

HISTORIES = [
    ["hello how are you"],
    ["hi", "i lost my keys"],
    ["great party tonight", "wow really", "yes please sure okay"],
    ["awful terrible exam failed", "sorry sad", "what happened", "my boss hates my work"],
]
# Largest difference from torch allowed for the fp32 export: float32 rounding, in another order.
FP32_TOLERANCE = 1e-5
ONNX_NAMES = ("model.onnx", "model.int8.onnx")


def copy_without_onnx(model_folder: str, target: str) -> str:
    shutil.copytree(model_folder, target, ignore=shutil.ignore_patterns("*.onnx"))
    return target


@pytest.fixture(scope="module")
def predictors(tiny_run_dir):
    from emotion_predictor.prediction.predictor import EmotionPredictor

    return {
        runtime: EmotionPredictor.from_pretrained(tiny_run_dir, device="cpu", runtime=runtime)
        for runtime in ("torch", "onnx", "onnx_int8")
    }


def probabilities(forecasts) -> np.ndarray:
    return np.array([list(f.probabilities.values()) for f in forecasts])


def test_the_run_wrote_both_onnx_files(tiny_run_dir):
    names = os.listdir(os.path.join(tiny_run_dir, "model"))
    assert {"model.onnx", "model.int8.onnx"} <= set(names)
    assert not [n for n in names if ".tmp-" in n]


def test_onnx_forecasts_equal_torch(predictors):
    torch_runs, onnx_runs = predictors["torch"], predictors["onnx"]
    assert (onnx_runs.runtime, onnx_runs.device) == ("onnx", "cpu") and "runtime='onnx'" in repr(onnx_runs)
    expected = probabilities(torch_runs.predict_batch(HISTORIES))
    batched = onnx_runs.predict_batch(HISTORIES, batch_size=3)
    single = [onnx_runs.predict(h) for h in HISTORIES]
    np.testing.assert_allclose(probabilities(batched), expected, rtol=0, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(probabilities(single), expected, rtol=0, atol=FP32_TOLERANCE)
    assert [f.label for f in batched] == [EMOTIONS[i] for i in expected.argmax(1)]
    assert np.abs(expected - expected[:1]).max() > 10 * FP32_TOLERANCE  # the tolerance tells the histories apart


def test_onnx_probabilities_and_embeddings_equal_torch_through_load_classifier(tiny_run_dir, tiny_dataset_dir):
    from emotion_predictor.data.utils import prepare_splits
    from emotion_predictor.prediction.forecast import predict_proba
    from emotion_predictor.prediction.inference import load_classifier, model_outputs

    turns = prepare_splits(tiny_dataset_dir, splits=("test",)).splits["test"]["turns"].tolist()
    by_torch = load_classifier(tiny_run_dir, device="cpu")
    by_onnx = load_classifier(tiny_run_dir, runtime="onnx")
    assert by_onnx.model is None and by_onnx.config.hidden_size == by_torch.config.hidden_size == 32
    np.testing.assert_allclose(
        predict_proba(by_onnx, turns, batch_size=16), predict_proba(by_torch, turns, batch_size=16), atol=1e-5
    )
    torch_probs, torch_embeddings = model_outputs(by_torch, turns, batch_size=16, embed=True)
    onnx_probs, onnx_embeddings = model_outputs(by_onnx, turns, batch_size=16, embed=True)
    assert onnx_embeddings.shape == (len(turns), 32)
    np.testing.assert_allclose(onnx_embeddings, torch_embeddings, rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_probs, torch_probs, rtol=0, atol=FP32_TOLERANCE)


def test_int8_forecasts_are_distributions_close_to_fp32(predictors):
    forecasts = predictors["onnx_int8"].predict_batch(HISTORIES)
    got = probabilities(forecasts)
    assert got.shape == (len(HISTORIES), len(EMOTIONS))
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert (got >= 0).all() and all(f.label in EMOTIONS for f in forecasts)
    assert np.abs(got - probabilities(predictors["onnx"].predict_batch(HISTORIES))).max() < 0.05


@pytest.mark.parametrize(
    "runtime, file, flag", [("onnx", "model.onnx", ""), ("onnx_int8", "model.int8.onnx", " --int8")]
)
def test_a_model_without_its_onnx_file_says_how_to_export_it(runtime, file, flag, tiny_run_dir, tmp_path):
    from emotion_predictor.prediction.predictor import EmotionPredictor

    folder = copy_without_onnx(os.path.join(tiny_run_dir, "model"), str(tmp_path / "model"))
    with pytest.raises(UserError) as caught:
        EmotionPredictor.from_pretrained(folder, runtime=runtime)
    message = str(caught.value)
    assert message == (
        f"runtime {runtime!r} needs {os.path.join(folder, file)}, which is not there: export it with "
        f"`uv run ep-export-onnx --model {folder}{flag}` (needs the [train] extra), or use runtime 'torch'"
    )


def test_bad_runtime_device_or_onnx_file_is_one_line(tiny_run_dir, tmp_path):
    from emotion_predictor.prediction.inference import load_classifier

    with pytest.raises(UserError, match="^runtime 'tensorrt' is not one of torch, onnx, onnx_int8$"):
        load_classifier(tiny_run_dir, runtime="tensorrt")
    with pytest.raises(UserError, match="runtime 'onnx' runs on the CPU, not device 'cuda'"):
        load_classifier(tiny_run_dir, device="cuda", runtime="onnx")
    folder = copy_without_onnx(os.path.join(tiny_run_dir, "model"), str(tmp_path / "model"))
    (tmp_path / "model" / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(UserError, match=r"model\.onnx is not a readable ONNX model \(.*\); export it again$"):
        load_classifier(folder, runtime="onnx")


def test_export_command_writes_files_that_forecast_like_the_run(tiny_run_dir, predictors, tmp_path, capsys):
    from emotion_predictor.cli.export_onnx import main

    output_dir = tmp_path / "run"
    copy_without_onnx(tiny_run_dir, str(output_dir))
    main(["--model", str(output_dir), "--int8"])
    model = output_dir / "model"
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"wrote {model / 'model.onnx'} and {model / 'model.int8.onnx'}"
    assert not [n for n in os.listdir(model) if ".tmp-" in n]
    from emotion_predictor.prediction.predictor import EmotionPredictor

    for runtime in ("onnx", "onnx_int8"):
        exported = EmotionPredictor.from_pretrained(str(output_dir), runtime=runtime).predict_batch(HISTORIES)
        expected = predictors[runtime].predict_batch(HISTORIES)
        np.testing.assert_allclose(probabilities(exported), probabilities(expected), atol=1e-6)


def test_export_command_bad_input_is_one_error_line(tmp_path, monkeypatch, capsys):
    from emotion_predictor.cli.export_onnx import main

    missing = str(tmp_path / "missing")
    assert cli_error_lines(main, ["ep-export-onnx", "--model", missing], monkeypatch, capsys) == [
        f"error: model folder {missing!r} does not exist; give a fine-tuning output_dir or a model folder"
    ]
    [line] = cli_error_lines(main, ["ep-export-onnx", "--model", str(tmp_path)], monkeypatch, capsys)
    assert line.startswith(f"error: {str(tmp_path)!r} is not a model folder (no config.json")


def test_mean_pooling_bert_exports_with_its_embedding(tmp_path):
    """The quickstart's architecture: the head reads the mean of the real-token states."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from emotion_predictor.modeling.onnx_export import export_model_folder
    from emotion_predictor.modeling.sequence_classifier import with_mean_pooling
    from emotion_predictor.prediction.inference import load_classifier, model_outputs

    plain = build_tiny_bert(str(tmp_path / "plain"), seed=3)
    folder = str(tmp_path / "mean")
    with_mean_pooling(AutoModelForSequenceClassification.from_pretrained(plain)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(plain).save_pretrained(folder)
    assert export_model_folder(folder) == [os.path.join(folder, "model.onnx")]
    assert operator_counts(os.path.join(folder, "model.onnx"))["Attention"] == 2  # fused, as the quickstart's
    turns = [[" ".join(h)] for h in HISTORIES]
    by_torch = load_classifier(folder, device="cpu")
    assert by_torch.config.model_type == "bert_mean_pooling"
    torch_probs, torch_embeddings = model_outputs(by_torch, turns, batch_size=2, embed=True)
    onnx_probs, onnx_embeddings = model_outputs(load_classifier(folder, runtime="onnx"), turns, 2, embed=True)
    np.testing.assert_allclose(onnx_probs, torch_probs, rtol=0, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(onnx_embeddings, torch_embeddings, rtol=0, atol=1e-4)


def operator_counts(path: str) -> dict[str, int]:
    import collections

    import onnx

    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


def test_the_exported_graphs_run_each_layers_attention_as_one_operator(tiny_run_dir):
    """ONNX Runtime's fusions, which made the quickstart's int8 forward 20% faster (onnx_export.py)."""
    fp32, int8 = (operator_counts(os.path.join(tiny_run_dir, "model", name)) for name in ONNX_NAMES)
    assert (fp32["Attention"], fp32["Softmax"], fp32["SkipLayerNormalization"]) == (2, 0, 4)  # 2 layers
    assert (int8["QAttention"], int8["Attention"]) == (2, 0)


@pytest.mark.parametrize("failure", ["raises", "changes the outputs"])
def test_a_graph_the_fusions_break_is_exported_unfused(failure, tiny_run_dir, tmp_path, monkeypatch, caplog):
    import onnx
    from onnx import numpy_helper
    from onnxruntime.transformers import optimizer

    from emotion_predictor.modeling.onnx_export import export_model_folder
    from emotion_predictor.prediction.predictor import EmotionPredictor

    class Broken:
        def __init__(self, path: str, **_kwargs) -> None:
            if failure == "raises":
                raise ValueError("no pattern matched\nmore lines")
            self.graph = onnx.load(path)

        def save_model_to_file(self, path: str) -> None:
            for weight in self.graph.graph.initializer:  # every weight scaled: no layer norm undoes it
                values = numpy_helper.to_array(weight)
                if values.dtype == np.float32 and values.ndim == 2:
                    weight.CopyFrom(numpy_helper.from_array(values * 1.5, weight.name))
            onnx.save(self.graph, path)

    folder = copy_without_onnx(os.path.join(tiny_run_dir, "model"), str(tmp_path / "model"))
    monkeypatch.setattr(optimizer, "optimize_model", Broken)
    with caplog.at_level("WARNING"):
        export_model_folder(folder)
    [warning] = [r.getMessage() for r in caplog.records]
    because = "they failed (no pattern matched)" if failure == "raises" else "its graph differs from torch by"
    assert warning.startswith(f"ONNX Runtime's transformer fusions not applied: {because}")
    assert warning.endswith("; kept the unfused graph")
    assert operator_counts(os.path.join(folder, "model.onnx"))["Attention"] == 0
    assert not [n for n in os.listdir(folder) if ".tmp-" in n or n.endswith(".fused")]
    by_onnx, by_torch = (
        EmotionPredictor.from_pretrained(folder, device="cpu", runtime=runtime).predict_batch(HISTORIES)
        for runtime in ("onnx", "torch")
    )
    np.testing.assert_allclose(probabilities(by_onnx), probabilities(by_torch), rtol=0, atol=FP32_TOLERANCE)


def build_tiny_encoder(folder: str, model_type: str) -> str:
    """A 2-layer random RoBERTa (the reference base model's family) or DistilBERT classifier."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from emotion_predictor.labels import ID2LABEL

    tokenizer = build_tokenizer(folder)
    sizes = {
        "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    }[model_type]
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        **sizes,
    )
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_roberta_and_distilbert_export_fused_and_equal_torch(model_type, tmp_path):
    from emotion_predictor.modeling.onnx_export import export_model_folder
    from emotion_predictor.prediction.inference import load_classifier, model_outputs

    folder = build_tiny_encoder(str(tmp_path / model_type), model_type)
    export_model_folder(folder, int8=True)
    fp32, int8 = (operator_counts(os.path.join(folder, name)) for name in ONNX_NAMES)
    assert (fp32["Attention"], int8["QAttention"]) == (2, 2)
    turns = [[" ".join(h)] for h in HISTORIES]
    torch_probs, torch_embeddings = model_outputs(load_classifier(folder, device="cpu"), turns, 2, embed=True)
    onnx_probs, onnx_embeddings = model_outputs(load_classifier(folder, runtime="onnx"), turns, 2, embed=True)
    np.testing.assert_allclose(onnx_probs, torch_probs, rtol=0, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(onnx_embeddings, torch_embeddings, rtol=0, atol=1e-4)


def test_a_model_that_does_not_export_is_one_line(tiny_run_dir, tmp_path, monkeypatch):
    import torch

    from emotion_predictor.modeling import onnx_export

    folder = copy_without_onnx(os.path.join(tiny_run_dir, "model"), str(tmp_path / "model"))

    def unsupported(*_args, **_kwargs):
        raise RuntimeError("Unsupported operator aten::mystery\nmore lines")

    with monkeypatch.context() as patched:
        patched.setattr(torch.onnx, "export", unsupported)
        with pytest.raises(UserError) as caught:
            onnx_export.export_model_folder(folder)
    assert str(caught.value) == (
        "model type 'bert' (BertForSequenceClassification) cannot be exported to ONNX: "
        "RuntimeError: Unsupported operator aten::mystery; use runtime 'torch' for it"
    )
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # any difference from torch is too much
    with pytest.raises(UserError, match=r"^the ONNX export of BertForSequenceClassification differs from torch by"):
        onnx_export.export_model_folder(folder)
    assert not os.path.exists(os.path.join(folder, "model.onnx"))  # nothing half-checked is left behind


def test_a_run_whose_model_does_not_export_warns_and_keeps_its_outputs(monkeypatch, caplog, tmp_path):
    from emotion_predictor.arguments import TrainingConfig
    from emotion_predictor.training import recipe

    def refuse(folder, int8):
        raise UserError(f"model type 'mystery' cannot be exported to ONNX ({folder}, int8 {int8})")

    monkeypatch.setattr(recipe, "export_model_folder", refuse)
    with caplog.at_level("WARNING"):
        recipe.export_for_onnx_runtime(TrainingConfig(output_dir=str(tmp_path), export_onnx="fp32+int8"))
        recipe.export_for_onnx_runtime(TrainingConfig(output_dir=str(tmp_path), export_onnx="none"))
    assert [r.getMessage() for r in caplog.records] == [
        f"No ONNX export (export_onnx fp32+int8): model type 'mystery' cannot be exported to ONNX "
        f"({tmp_path / 'model'}, int8 True)"
    ]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--runtime", "tensorrt"], 'key \'runtime\' has value "tensorrt": expected one of "torch", "onnx"'),
        (["--runtime", "onnx", "--device", "cuda"], "runtime onnx runs on the CPU, not device cuda"),
    ],
)
def test_predict_config_checks_the_runtime(overrides, message):
    import ep_predict

    with pytest.raises(ConfigError, match=message):
        ep_predict.main(["--json_file", os.path.join(ROOT, "args", "ep_predict_arg.json"), "--input", "-", *overrides])


def test_ep_predict_forecasts_with_onnx(tiny_run_dir, predictors, tmp_path):
    import ep_predict

    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "history": h}) + "\n" for i, h in enumerate(HISTORIES)))
    args = ["--json_file", os.path.join(ROOT, "args", "ep_predict_arg.json"), "--model", tiny_run_dir]
    assert ep_predict.main([*args, "--input", str(source), "--output", str(target), "--runtime", "onnx"]) == 0
    got = [json.loads(line)["probabilities"] for line in target.read_text().splitlines()]
    expected = probabilities(predictors["torch"].predict_batch(HISTORIES))
    np.testing.assert_allclose([list(p.values()) for p in got], expected, atol=FP32_TOLERANCE)


def run_bench(module, argv: list[str], monkeypatch, capsys) -> str:
    """A bench script's main, in-process, as the command line `argv`; its stdout."""
    import sys

    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    module.main()
    return capsys.readouterr().out


def test_quality_bench_scores_each_runtime(tiny_run_dir, tiny_dataset_dir, monkeypatch, capsys):
    from bench import onnx_quality

    out = run_bench(onnx_quality, ["--model", tiny_run_dir, "--dataset", tiny_dataset_dir], monkeypatch, capsys)
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in out.splitlines() if line.startswith("| ")
    }
    assert list(rows) == ["runtime", "torch", "onnx", "onnx_int8"]
    assert rows["onnx"][:4] == rows["torch"][:4]  # the same four headline figures, to 4 decimals
    assert rows["torch"][4:6] == ["0.0e+00", "0.00%"] and float(rows["onnx"][4]) <= FP32_TOLERANCE


def test_latency_bench_times_every_runtime_and_the_pipeline(tiny_run_dir, tiny_dataset_dir, monkeypatch, capsys):
    from bench import predict_latency

    argv = ["--model", tiny_run_dir, "--dataset", tiny_dataset_dir, "--rows", "6", "--warmup", "1"]
    out = run_bench(predict_latency, [*argv, "--dialogues", "2", "--repeats", "1"], monkeypatch, capsys)
    figures = [line for line in out.splitlines() if line.startswith("| ")]
    assert figures[0] == (
        "| measure | pipeline | EmotionPredictor torch | EmotionPredictor onnx | EmotionPredictor onnx_int8 |"
    )
    differences = next(line for line in figures if line.startswith("| max \\|p - p_torch\\|"))
    pipeline, torch_runtime, onnx_runtime, _ = (float(cell) for cell in differences.strip("| ").split(" | ")[1:])
    assert pipeline < 1e-5 and torch_runtime == 0 and onnx_runtime <= FP32_TOLERANCE  # the tiny run has no memory
    conversation = next(line for line in figures if line.startswith("| in a conversation p50 (ms)"))
    assert all(float(cell) > 0 for cell in conversation.strip("| ").split(" | ")[1:])  # the pipeline too
    assert "| in a conversation p50 (the pipeline in the same turns) | " in out
    assert "| batch | " in out and out.rstrip().endswith("count as equal: timing noise)")
