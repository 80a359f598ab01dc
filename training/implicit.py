"""The implicit PRM style (Yuan et al. 2024, "Free Process Rewards without Process Labels"; PRIME): process rewards
from a causal LM trained on outcome labels only.

The trained model pi and a frozen reference pi_ref (the starting weights) read the solution after the policy's
prompt (`data_prep.judgement.likelihood_layout`); step k's reward is r_k = beta * sum over the step's tokens of
(log pi - log pi_ref), and the loss is the cross-entropy of sigmoid(sum_k r_k) against the solution's outcome (all
steps right or not). At the start pi = pi_ref, so every reward is 0; training moves pi away from pi_ref only where
that tells right solutions from wrong ones, and the per-step share of the solution's reward is the step's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from training.generative import PRMInputError
from training.likelihood_head import load_saved_lm, next_token_log_probs, save_lm, step_membership, submodule_state

IMPLICIT_STYLE = "implicit"
PROMPT_FORMAT = ("the policy's chat template over ttc's system prompt and the problem, then the solution (steps "
                 "joined by the blank line); step reward = beta * sum of log P_model - log P_reference over the "
                 "step's tokens; trained on the solution's outcome (all labels true)")


def outcome_label(labels: Sequence[bool | float], where: str) -> float:
    """1.0 when every step is labelled good, else 0.0; a soft label is refused (an outcome is right or wrong)."""
    for index, label in enumerate(labels):
        if not isinstance(label, bool):
            raise PRMInputError(f"{where}: labels[{index}] is the soft label {label!r}; prm_style implicit trains on "
                                "outcome labels (true/false per step, the solution right when all are true)")
    return float(all(labels))


def token_log_probs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log P(token t | tokens before it) under `model` for every t >= 1, and 0 at t = 0 (batch, length)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    return next_token_log_probs(logits, input_ids)


class ImplicitPRMModel(torch.nn.Module):
    """The trained causal LM and its frozen reference; `forward` gives the solution's outcome logits `(0, sum r_k)`
    (batch, 1, 2), so the 2-way soft cross-entropy every PRM style trains with is the implicit PRM's loss."""

    def __init__(self, model: Any, reference: Any | None, *, beta: float) -> None:
        """reference None: `model` is a peft model and the reference is the same LM with its adapters turned off."""
        super().__init__()
        if beta <= 0:
            raise ValueError(f"implicit_beta must be > 0, got {beta}")
        self.model = model
        # Held outside the module's parameters and state dict: it is never trained or saved with the PRM.
        self._reference = [None if reference is None else reference.requires_grad_(False).eval()]
        self.beta = beta
        self.config = model.config
        self.warnings_issued: dict[str, bool] = {}

    @property
    def reference(self) -> Any:
        return self._reference[0]

    def place_reference(self, place: Any) -> None:
        """Replace the reference by `place(reference)`: DeepSpeed's inference engine around it under ZeRO-3, whose
        partitioned weights only an engine can run."""
        self._reference[0] = place(self.reference)

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.model.gradient_checkpointing_enable(**kwargs)

    def rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, step_index: torch.Tensor) -> torch.Tensor:
        """beta * the log-ratio summed over each step's tokens (batch, steps); tokens outside steps count nowhere."""
        if self.reference is None:
            with torch.no_grad(), self.model.disable_adapter():
                reference_log_probs = token_log_probs(self.model, input_ids, attention_mask)
        else:
            reference = self.reference
            if isinstance(reference, PreTrainedModel):  # a DeepSpeed engine places its own weights
                reference = reference.to(input_ids.device)
            with torch.no_grad():
                reference_log_probs = token_log_probs(reference, input_ids, attention_mask)
        log_ratio = token_log_probs(self.model, input_ids, attention_mask) - reference_log_probs
        return self.beta * (log_ratio[:, None, :] * step_membership(step_index)).sum(dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, step_index: torch.Tensor,
                labels: Any = None, **unused: Any) -> dict[str, torch.Tensor]:
        # `labels` is named so the Trainer finds its label column (the loss is computed outside, by the Trainer).
        outcome = self.rewards(input_ids, attention_mask, step_index).sum(dim=-1, keepdim=True)
        return {"logits": torch.stack([torch.zeros_like(outcome), outcome], dim=-1)}

    def save_checkpoint(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """The trained LM by `save_pretrained` (safetensors; its adapters only, with LoRA); the reference stays
        where ttc_prm.json points. `state_dict`: this module's weights gathered whole (ZeRO-3)."""
        save_lm(self.model, directory, submodule_state(state_dict, "model"))

    def load_checkpoint(self, directory: str | Path) -> None:
        """Weights written by `save_checkpoint` back into the trained LM (resuming a run)."""
        load_saved_lm(self.model, directory, "implicit PRM")
