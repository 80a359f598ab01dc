"""The likelihood-head PRM style: a causal LM's own token probabilities with a trained head over them.

The untrained likelihood verifier (policy-large read as `min` over a step's tokens of P(token | before)) verifies
the small policy's arithmetic far better than a fresh classification head learns to. This style trains from that
read-out instead of beside it: the step logit is `likelihood_weight * min log P + hidden_weight . h + bias`
(`data_prep.prm_metadata.LIKELIHOOD_HEAD_FILE`), initialised to the read-out itself (weights 1, 0, 0), so the head
can only add to it what the labels teach: a calibrated threshold and, from the hidden state at the step's end,
which kinds of step need more or less confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from data_prep.judgement import JudgementLayoutError, likelihood_layout
from data_prep.prm_metadata import LIKELIHOOD_HEAD_FILE, LIKELIHOOD_HEAD_TENSORS
from training.generative import IGNORE_INDEX, PRMInputError

LIKELIHOOD_HEAD_STYLE = "likelihood_head"
NO_STEP = -1
"""`step_index` of a token that belongs to no step (the prompt, separators, padding)."""
PROMPT_FORMAT = ("the policy's chat template over ttc's system prompt and the problem, then the solution (steps "
                 "joined by the blank line) as the policy writes it; judged per step from its tokens' probabilities "
                 "and the last hidden state at its last token")


@dataclass(frozen=True)
class LikelihoodHeadRow:
    """One training example: token ids, the step each token belongs to, and one label per (kept) step."""

    input_ids: list[int]
    step_index: list[int]
    step_labels: list[float]


def layout_row(tokenizer: Any, prompt: str, steps: Sequence[str], labels: Sequence[float] | None, *,
               system_prompt: str | None, max_length: int | None) -> LikelihoodHeadRow:
    """The example the scorer would read; steps cut by `max_length` and their labels are dropped."""
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for {len(steps)} steps; need one label per step")
    try:
        input_ids, spans = likelihood_layout(tokenizer, prompt, steps, system_prompt)
    except (JudgementLayoutError, ValueError) as error:
        raise PRMInputError(str(error)) from None
    if max_length is not None:
        input_ids = input_ids[:max_length]
        spans = [span for span in spans if span[1] < max_length]
    step_index = [NO_STEP] * len(input_ids)
    for index, (first, last) in enumerate(spans):
        step_index[first: last + 1] = [index] * (last - first + 1)
    kept = [] if labels is None else [float(label) for label in labels[: len(spans)]]
    return LikelihoodHeadRow(input_ids, step_index, kept)


@dataclass
class LikelihoodHeadCollator:
    """Right-pads input_ids (pad token), step_index (NO_STEP) and labels (one column per step, -100)."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        steps = max([len(feature["labels"]) for feature in features] + [1])
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        step_index = torch.full((len(features), length), NO_STEP, dtype=torch.long)
        labels = torch.full((len(features), steps), float(IGNORE_INDEX), dtype=torch.float32)
        for row, feature in enumerate(features):
            size = len(feature["input_ids"])
            input_ids[row, :size] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[row, :size] = 1
            step_index[row, :size] = torch.as_tensor(feature["step_index"], dtype=torch.long)
            labels[row, : len(feature["labels"])] = torch.as_tensor(feature["labels"], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "step_index": step_index, "labels": labels}


def next_token_log_probs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log P(token t | tokens before it) for every t >= 1 from `logits` of positions 0..length-2, and 0 at t = 0
    (batch, length): token 0 has no prediction and is never part of a step (the prompt comes first)."""
    chosen = torch.log_softmax(logits.float(), dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return torch.cat([chosen.new_zeros((len(input_ids), 1)), chosen], dim=1)


def step_membership(step_index: torch.Tensor) -> torch.Tensor:
    """(batch, steps, length) booleans: token t belongs to step k; steps = the largest index present + 1 (one column
    when no row has a step, so the shapes stay valid)."""
    steps = max(int(step_index.max()) + 1, 1)
    return step_index[:, None, :] == torch.arange(steps, device=step_index.device)[None, :, None]


class LikelihoodHeadModel(torch.nn.Module):
    """A causal LM and the three head tensors; `forward` gives each step's (bad, good) logits `(0, logit)`, so the
    2-way soft cross-entropy every PRM style trains with is the binary cross-entropy of the step's logit."""

    def __init__(self, backbone: Any, *, freeze_backbone: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        hidden = backbone.config.hidden_size
        self.likelihood_weight = torch.nn.Parameter(torch.ones(1))
        self.hidden_weight = torch.nn.Parameter(torch.zeros(hidden))
        self.bias = torch.nn.Parameter(torch.zeros(1))
        if freeze_backbone:
            backbone.requires_grad_(False)
        # The Trainer reads these off the model it is given.
        self.config = backbone.config
        self.warnings_issued: dict[str, bool] = {}

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.backbone.gradient_checkpointing_enable(**kwargs)

    def _features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probability of each token given those before it, (batch, length); last hidden states)."""
        decoder = self.backbone.get_decoder()
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return next_token_log_probs(self.backbone.get_output_embeddings()(hidden[:, :-1]), input_ids), hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, step_index: torch.Tensor,
                labels: Any = None, **unused: Any) -> dict[str, torch.Tensor]:
        # `labels` is named so the Trainer finds its label column (the loss is computed outside, by the Trainer).
        if self.freeze_backbone:
            with torch.no_grad():
                token_log_probs, hidden = self._features(input_ids, attention_mask)
        else:
            token_log_probs, hidden = self._features(input_ids, attention_mask)
        in_step = step_membership(step_index)
        min_log_prob = torch.where(in_step, token_log_probs[:, None, :], torch.inf).amin(dim=-1)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = torch.where(in_step, positions[None, None, :], -1).amax(dim=-1)
        present = last >= 0
        at_end = hidden.gather(1, last.clamp(min=0)[..., None].expand(-1, -1, hidden.shape[-1])).float()
        logit = (self.likelihood_weight * torch.where(present, min_log_prob, 0.0)
                 + at_end @ self.hidden_weight + self.bias)
        logits = torch.stack([torch.zeros_like(logit), logit], dim=-1)
        return {"logits": torch.where(present[..., None], logits, 0.0)}

    def save_checkpoint(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """The LM by `save_pretrained` (safetensors; its adapters only, with LoRA) and the head in
        LIKELIHOOD_HEAD_FILE, as the scorer loads them. `state_dict`: this module's weights gathered whole (ZeRO-3,
        where the parameters themselves hold only this process's partition)."""
        directory = Path(directory)
        save_lm(self.backbone, directory, submodule_state(state_dict, "backbone"))
        source = state_dict if state_dict is not None else dict(self.named_parameters(recurse=False))
        head = {name: source[name].detach().float().cpu().contiguous() for name in LIKELIHOOD_HEAD_TENSORS}
        save_file(head, str(directory / LIKELIHOOD_HEAD_FILE), metadata={"format": "pt"})

    def load_checkpoint(self, directory: str | Path) -> None:
        """Weights written by `save_checkpoint` back into this model (resuming a run)."""
        from safetensors.torch import load_file

        load_saved_lm(self.backbone, directory, "likelihood-head PRM")
        head = load_file(str(Path(directory) / LIKELIHOOD_HEAD_FILE))
        with torch.no_grad():
            for name in LIKELIHOOD_HEAD_TENSORS:
                getattr(self, name).copy_(head[name])


def submodule_state(state_dict: dict[str, torch.Tensor] | None, prefix: str) -> dict[str, torch.Tensor] | None:
    """The entries of a module's state dict under `prefix.`, with the prefix dropped (None stays None)."""
    if state_dict is None:
        return None
    return {key[len(prefix) + 1:]: value for key, value in state_dict.items() if key.startswith(prefix + ".")}


def save_lm(lm: Any, directory: str | Path, state_dict: dict[str, torch.Tensor] | None) -> None:
    """`lm.save_pretrained` in safetensors, from `state_dict` when given (weights gathered from ZeRO-3 partitions;
    a peft model picks its adapter weights out of it)."""
    lm.save_pretrained(Path(directory), safe_serialization=True, state_dict=state_dict)


def load_saved_lm(lm: Any, directory: str | Path, what: str) -> None:
    """The LM weights `save_pretrained` wrote into `directory` back into `lm` (a tied LM head is not in the file;
    a peft model reads its adapter)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    from peft import PeftModel

    if isinstance(lm, PeftModel):
        from peft import set_peft_model_state_dict

        adapter = directory / "adapter_model.safetensors"
        if not adapter.is_file():
            raise FileNotFoundError(f"{adapter} not found: no LoRA adapter to resume the {what} from")
        result = set_peft_model_state_dict(lm, load_file(str(adapter)))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{adapter}: adapter weights that fit no module of this model: {result.unexpected_keys}")
        return
    state: dict[str, torch.Tensor] = {}
    for weights in sorted(directory.glob("model*.safetensors")):
        state.update(load_file(str(weights)))
    if not state:
        raise FileNotFoundError(f"{directory}: no model*.safetensors to resume the {what} from")
    missing, unexpected = lm.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(lm.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"{directory}: the LM weights do not fit this model (missing {sorted(set(missing) - tied)}, "
                         f"unexpected {sorted(unexpected)})")
