"""Tokenizing a prepared split for training, cached on disk (the last step of the data path:
load, check, shift, downsample, tokenize).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import pandas as pd

from emotion_predictor.data.inputs import encode_turns

TOKENIZATION_VERSION = 1  # bump when the tokenized-cache format or input building changes


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(frame[["dialog_id", "turn", "label"]], index=False).to_numpy().tobytes())
    digest.update("\x1f".join("\x1e".join(t) for t in frame["turns"]).encode())
    return digest.hexdigest()


def tokenize_split(
    frame: pd.DataFrame, tokenizer: Any, separator: str, max_length: int, cache_dir: str | None = None
) -> Any:
    """A `datasets.Dataset` with `input_ids`, `labels` and `length` (unpadded), cached on disk.

    The cache key covers the rows, the labels, the tokenizer, the separator and `max_length`,
    so a changed input never reuses a stale cache.
    """
    import datasets

    key = hashlib.sha256(
        json.dumps(
            [TOKENIZATION_VERSION, frame_fingerprint(frame), tokenizer_fingerprint(tokenizer), separator, max_length]
        ).encode()
    ).hexdigest()[:24]
    path = os.path.join(os.path.expanduser(cache_dir), key) if cache_dir else None
    if path and os.path.isdir(path):
        return datasets.load_from_disk(path)
    ids = encode_turns(tokenizer, frame["turns"].tolist(), separator, max_length)
    dataset = datasets.Dataset.from_dict(
        {"input_ids": ids, "labels": frame["label"].tolist(), "length": [len(i) for i in ids]}
    )
    if path:
        tmp = f"{path}.tmp-{os.getpid()}"
        dataset.save_to_disk(tmp)
        try:
            os.replace(tmp, path)
        except OSError:
            # Another process (a torchrun rank) cached the same content first: keep theirs.
            if not os.path.isdir(path):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        dataset = datasets.load_from_disk(path)
    return dataset
