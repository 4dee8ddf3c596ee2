"""Building, adapting and saving the sequence classifier.

- `load_base_model`: tokenizer + 7-class classifier from a folder, package or Hub id. A base model
  whose head already predicts our emotions under other names or order keeps its head, with rows
  reordered to our label order; any other model gets a new head.
- `apply_lora`: PEFT LoRA on the encoder; the classification head (and BERT's pooler, which only
  the head reads) is trained in full and saved with it.
- `save_model`: the PEFT adapter (`adapter/`) and the merged standalone model (`model/`), with
  the input settings a predictor needs in `emotion_predictor.json` and the knn memory, if kept.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

import torch
from torch import nn

from emotion_predictor.errors import UserError
from emotion_predictor.hub import hub_load_error, resolve_model_path
from emotion_predictor.labels import EMOTIONS, ID2LABEL, LABEL2ID, NUM_LABELS, map_head_to_emotions
from emotion_predictor.modeling import mean_pooling  # registers the mean-pooling classifier with the Auto loaders
from emotion_predictor.modeling.knn_memory import KnnMemory, save_memory
from emotion_predictor.modeling.model_folder import METADATA_FILE, RECOGNISER_FOLDER
from emotion_predictor.output_files import atomic_path, write_json
from emotion_predictor.prediction.decision import check_decision

logger = logging.getLogger(__name__)

# LoRA targets (attention query and value projections) by `config.model_type`.
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "bert_mean_pooling": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "mpnet": ["q", "v"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "modernbert": ["Wqkv"],
}


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise hub_load_error(name, "tokenizer", err) from None


def output_layer(model: nn.Module, out_features: int) -> nn.Linear:
    """The classification head's final linear layer (the last one producing `out_features`)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == out_features]
    if not layers:
        raise UserError(f"model {type(model).__name__} has no linear output layer with {out_features} outputs")
    return layers[-1]


def reorder_head(model: nn.Module, order: list[int]) -> None:
    """Permute the head's output rows so that output i is our class i."""
    layer = output_layer(model, NUM_LABELS)
    index = torch.tensor(order)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[index].clone())
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[index].clone())


def set_our_labels(config: Any) -> None:
    config.num_labels = NUM_LABELS
    config.id2label = dict(ID2LABEL)
    config.label2id = dict(LABEL2ID)
    config.problem_type = "single_label_classification"


def load_base_model(name: str, trust_remote_code: bool = False) -> tuple[nn.Module, str]:
    """A 7-class classifier for `name` and how its head was made ("reordered" or "new")."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise hub_load_error(name, "model config", err) from None
    base_labels = {int(k): v for k, v in (config.id2label or {}).items()}
    order = map_head_to_emotions(base_labels) if getattr(config, "num_labels", 0) == NUM_LABELS else None
    try:
        if order is not None:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, config=config, trust_remote_code=trust_remote_code
            )
            reorder_head(model, order)
            set_our_labels(model.config)
            logger.info(
                "Kept the base model's emotion head, rows reordered from (%s) to (%s)",
                ", ".join(base_labels[i] for i in range(NUM_LABELS)),
                ", ".join(EMOTIONS),
            )
            return model, "reordered"
        set_our_labels(config)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError) as err:
        raise hub_load_error(name, "model", err) from None
    logger.info("Started a new 7-class head (the base model's labels do not name our emotions)")
    return model, "new"


def with_mean_pooling(model: nn.Module) -> nn.Module:
    """The same classifier (weights, head) with its head reading the mean of real-token states."""
    from emotion_predictor.modeling.mean_pooling import MeanPoolingBertConfig, MeanPoolingBertForSequenceClassification

    model_type = model.config.model_type
    if model_type == MeanPoolingBertConfig.model_type:
        return model
    if model_type != "bert":
        raise UserError(
            "pooling 'mean' is implemented for BERT encoders (model_type bert, e.g. all-MiniLM-L6-v2), "
            f"not {model_type!r}; use pooling 'model' for this base model"
        )
    settings = {k: v for k, v in model.config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    converted = MeanPoolingBertForSequenceClassification(MeanPoolingBertConfig(**settings))
    missing, _ = converted.load_state_dict(model.state_dict(), strict=False)  # the pooler's weights are dropped
    if missing:
        raise UserError(f"mean pooling: weights missing after conversion: {', '.join(missing)}")
    return converted


def head_module_names(model: nn.Module) -> list[str]:
    """Top-level modules outside the encoder that hold weights: the classification head."""
    encoder = getattr(model, "base_model_prefix", "")
    return [name for name, child in model.named_children() if name != encoder and any(True for _ in child.parameters())]


def pooler_name(model: nn.Module) -> str | None:
    """Name of the encoder's pooler when the classification head reads it (BERT and kin)."""
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    pooler = getattr(encoder, "pooler", None)
    return "pooler" if pooler is not None and any(True for _ in pooler.parameters()) else None


def target_modules_for(model: nn.Module, configured: list[str] | None) -> list[str]:
    model_type = getattr(model.config, "model_type", "")
    linear_names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
    targets = configured or DEFAULT_TARGET_MODULES.get(model_type)
    if not targets:
        raise UserError(
            f"no default lora_target_modules for model type {model_type!r}; set lora_target_modules to some of "
            f"its linear layers: {', '.join(linear_names)}"
        )
    missing = [t for t in targets if t not in linear_names]
    if missing:
        raise UserError(
            f"lora_target_modules {', '.join(missing)} not found in model type {model_type!r}; "
            f"its linear layers are {', '.join(linear_names)}"
        )
    return targets


def apply_lora(model: nn.Module, args: Any) -> nn.Module:
    """Wrap `model` with LoRA adapters per `ModelArguments`; the head stays fully trainable."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        init_lora_weights=args.init_lora_weights,
        use_rslora=args.use_rslora,
        bias=args.lora_bias,
        target_modules=target_modules_for(model, args.lora_target_modules),
        # BERT's pooler feeds only the head: frozen, it would pin the head to pretraining features.
        modules_to_save=head_module_names(model) + [n for n in [pooler_name(model)] if n],
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA: %s of %s parameters trainable (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return peft_model


def merged_model(model: nn.Module) -> nn.Module:
    """A standalone transformers model: LoRA weights folded in, no PEFT wrapper."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def save_model(
    model: nn.Module,
    tokenizer: Any,
    output_dir: str,
    metadata: dict[str, Any],
    memory: KnnMemory | None = None,
    recogniser: Any = None,
) -> nn.Module:
    """Write `adapter/` (PEFT only) and `model/` atomically; return the merged model. `model/` also
    holds the knn memory when it is kept (weight above 0) and the emotion recogniser (a
    `Classifier`) when there is one; `adapter/` holds neither (no second copy): loaded from there,
    they are read from the `model/` folder beside it."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        with atomic_path(os.path.join(output_dir, "adapter")) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_metadata(tmp, metadata)
    merged = merged_model(model)
    with atomic_path(os.path.join(output_dir, "model")) as tmp:
        save_classifier_files(merged, tokenizer, tmp, metadata)
        if memory is not None and memory.weight > 0:
            save_memory(tmp, memory)
        if recogniser is not None:
            folder = os.path.join(tmp, RECOGNISER_FOLDER)
            save_classifier_files(recogniser.model, recogniser.tokenizer, folder, recogniser_metadata(recogniser))
    return merged


def save_classifier_files(model: nn.Module, tokenizer: Any, folder: str, metadata: dict[str, Any]) -> None:
    """A standalone model folder: weights, config, tokenizer and `emotion_predictor.json`."""
    model.save_pretrained(folder)
    if model.config.model_type == mean_pooling.MeanPoolingBertConfig.model_type:
        # The code that `auto_map` names, for loaders outside this project (trust_remote_code=True).
        shutil.copy(mean_pooling.__file__, os.path.join(folder, "mean_pooling.py"))
    tokenizer.save_pretrained(folder)
    write_metadata(folder, metadata)


def recogniser_metadata(recogniser: Any) -> dict[str, Any]:
    """A recogniser's saved settings: its own fine-tuning metadata (if any) with the input settings
    it was loaded with; its forecasts are read as probabilities, so no decision rule is kept."""
    kept = {k: v for k, v in recogniser.metadata.items() if k not in ("decision_rule", "tau", "knn_memory")}
    return {**kept, "context_turns": 0, "context_separator": recogniser.separator, "max_length": recogniser.max_length}


def write_metadata(folder: str, metadata: dict[str, Any]) -> None:
    write_json(os.path.join(folder, METADATA_FILE), metadata)


def read_metadata(folder: str) -> dict[str, Any] | None:
    """The saved input settings of a fine-tuned model folder, or None for other models."""
    path = os.path.join(folder, METADATA_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            metadata = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not valid JSON ({err}); fine-tune the model again to rewrite it") from None
    check_decision(metadata, path)
    return metadata
