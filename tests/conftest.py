"""Shared test fixtures: tiny offline models, a tiny dialogue dataset, a tiny fine-tuned run.

Everything here is built on the fly (no Hub, no network): a WordPiece tokenizer trained with the
`tokenizers` library, a 2-layer BERT with random weights, and DailyDialog-shaped JSONL splits.
"""

from __future__ import annotations

import json
import os
import random

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The project's modules are importable because `uv sync` installs the project (editable), this
# folder's helpers (`from conftest import ...`) because pytest's default "prepend" import mode puts
# this folder (it has no __init__.py) first on sys.path.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "dailydialog"))

WORDS = (  # noqa: SIM905 (a word list reads better as one string)
    "hello hi how are you fine thanks great terrible awful scared afraid happy glad sad sorry wow "
    "really what angry mad disgusting gross lost keys dinner beers tonight party exam failed passed "
    "love hate weather rain sun money work boss holiday trip yes no maybe please okay sure"
).split()
EMOTION_WORDS = {1: "angry", 2: "gross", 3: "scared", 4: "happy", 5: "sad", 6: "wow"}

requires_real_data = pytest.mark.skipif(
    not os.path.isdir(REAL_DATA), reason=f"real DailyDialog data not found at {REAL_DATA}"
)


def make_dialogues(count: int, seed: int) -> list[dict]:
    """Dialogues where an utterance before an emotional turn hints at that emotion."""
    rng = random.Random(seed)
    dialogues = []
    for dialog_id in range(count):
        length = rng.randint(2, 7)
        emotions = [rng.choice([0, 0, 0, 1, 2, 3, 4, 4, 5, 6]) for _ in range(length)]
        utterances = []
        for turn in range(length):
            words = rng.sample(WORDS, rng.randint(3, 8))
            if turn + 1 < length and emotions[turn + 1]:
                words.append(EMOTION_WORDS[emotions[turn + 1]])
            utterances.append(" ".join(words))
        acts = [rng.randint(1, 4) for _ in range(length)]
        dialogues.append({"dialog_id": dialog_id, "utterances": utterances, "emotions": emotions, "acts": acts})
    return dialogues


def write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_dailydialog")
    for split, count, seed in (("train", 120, 1), ("validation", 30, 2), ("test", 30, 3)):
        write_jsonl(str(folder / f"{split}.jsonl"), make_dialogues(count, seed))
    return str(folder)


def build_tokenizer(folder: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    corpus = [" ".join(WORDS)] * 5 + list(WORDS) + ["i lost my keys", "hi"]
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)
    return fast


def build_tiny_bert(folder: str, id2label: dict[int, str] | None = None, seed: int = 0) -> str:
    """Save a 2-layer random BERT classifier (with `id2label`, default ours) and its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from emotion_predictor.labels import ID2LABEL

    tokenizer = build_tokenizer(folder)
    labels = id2label or ID2LABEL
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random BERT with 2 generic labels (LABEL_0, LABEL_1): fine-tuning starts a new head."""
    folder = str(tmp_path_factory.mktemp("tiny_bert"))
    return build_tiny_bert(folder, id2label={i: f"LABEL_{i}" for i in range(2)})


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_model_dir, tiny_dataset_dir) -> str:
    """A finished fine-tuning run (LoRA, focal loss) on the tiny model and data, exported to ONNX
    (model/model.onnx and model/model.int8.onnx)."""
    from emotion_predictor.training.recipe import run_fine_tuning

    out = str(tmp_path_factory.mktemp("tiny_run"))
    run_fine_tuning(*tiny_config(tiny_model_dir, tiny_dataset_dir, out, export_onnx="fp32+int8"))
    return out


def tiny_config(model_dir: str, dataset_dir: str, output_dir: str, **overrides):
    """The four argument objects and pass-through dict of a fast tiny fine-tuning run."""
    from transformers import TrainingArguments

    from emotion_predictor.arguments import FINE_TUNE_CLASSES
    from emotion_predictor.config import build_instances

    values = {
        "model_name_or_path": model_dir,
        "dataset": dataset_dir,
        "output_dir": output_dir,
        "num_train_epochs": 2,
        "batch_size": 16,
        "learning_rate": 0.01,
        "lora_rank": 4,
        "lora_alpha": 8,
        "focal_gamma": 2,
        "report_to": ["none"],
        "data_cache_dir": None,
        "disable_tqdm": True,
        "logging_steps": 5,
        # Seconds per run that the tests of other things do not need; tiny_run_dir exports.
        "export_onnx": "none",
    }
    values.update(overrides)
    instances, passthrough = build_instances(values, FINE_TUNE_CLASSES, "test", set(), TrainingArguments)
    return (*instances, passthrough)


def cli_error_lines(main, argv: list[str], monkeypatch, capsys) -> list[str]:
    """Run an entry script's `main` in-process as the command line `argv`; it must exit 1 with no
    traceback. Returns the `error:` lines it printed."""
    import sys

    from emotion_predictor.errors import run_main

    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        run_main(main)
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def cli_exit(main, argv: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    """Like `cli_error_lines`, for any non-zero exit (a config error exits 2): runs `main` in-process
    as the command line `argv`, with no traceback; returns (exit code, the `error:` lines printed)."""
    import sys

    from emotion_predictor.errors import run_main

    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        run_main(main)
    assert exited.value.code != 0
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return exited.value.code, [line for line in stderr.splitlines() if line.startswith("error:")]
