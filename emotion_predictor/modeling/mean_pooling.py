"""A BERT sequence classifier whose head reads the mean of the encoder's real-token states.

Sentence-embedding encoders such as all-MiniLM-L6-v2 were trained to be read through that mean,
not through BERT's pooler on the [CLS] token, which `BertForSequenceClassification` uses.
`pooling: "mean"` in a fine-tuning config swaps the model for this class (same weights, no pooler).

The class has its own `model_type` so that no loader takes a saved model for a plain BERT (which
would silently pool the [CLS] token instead): this project's loaders know it (registered on
import), and the saved `model/` folder carries this file and an `auto_map`, so
`transformers.pipeline("text-classification", model=..., trust_remote_code=True)` loads it too.

This file is copied into every saved mean-pooling model: it imports only torch and transformers.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolingBertConfig(BertConfig):
    model_type = "bert_mean_pooling"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.auto_map = {
            "AutoConfig": "mean_pooling.MeanPoolingBertConfig",
            "AutoModelForSequenceClassification": "mean_pooling.MeanPoolingBertForSequenceClassification",
        }


class MeanPoolingBertForSequenceClassification(BertForSequenceClassification):
    config_class = MeanPoolingBertConfig

    def __init__(self, config: MeanPoolingBertConfig) -> None:
        super().__init__(config)
        # The [CLS] pooler is never read: without it no parameter goes untrained.
        self.bert.pooler = None
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        ).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MeanPoolingBertConfig.model_type, MeanPoolingBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(
    MeanPoolingBertConfig, MeanPoolingBertForSequenceClassification, exist_ok=True
)
