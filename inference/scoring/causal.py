"""What the +/- chat and step-tag PRM styles share: a causal LM read as P(good) / (P(good) + P(bad)) at given positions."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from inference.scoring.batching import BatchedPRMScorer, PRMInput
from inference.scoring.prefix_cache import DEFAULT_PREFIX_CACHE_BYTES, PrefixCachedScoring

logger = logging.getLogger(__name__)


def label_token_id(tokenizer: Any, text: str, *, role: str) -> int:
    """Id of the single token `text` encodes to (its last token, with a warning, when it encodes to several)."""
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if not ids:
        raise ValueError(f"{role} {text!r} encodes to no tokens; set {role} in ttc_prm.json to a token the PRM knows")
    if len(ids) > 1:
        # Math-Shepherd's own code reads the last piece of a tag that encodes to several; that piece must still be
        # the tag's end, not a byte of a character the tokenizer does not know (which would read noise).
        last = tokenizer.decode([ids[-1]]).strip()
        if not last or "\ufffd" in last or not text.strip().endswith(last):
            raise ValueError(f"{role} {text!r} is not a token of this tokenizer (it encodes to {len(ids)} pieces "
                             f"{ids}, the last {last!r}); set {role} to a token the PRM's tokenizer has")
        logger.warning("%s %r encodes to %d tokens %s; reading the last one", role, text, len(ids), ids)
    return ids[-1]


class CausalJudgeScorer(PrefixCachedScoring, BatchedPRMScorer):
    """Scores each step by the next-token distribution at its position, restricted to the good and bad tokens.

    Incremental by default: a solution that extends one scored before (a beam one step further) runs only the
    tokens after the earlier one's last judged position through the LM, from its keys and values
    (`inference.scoring.prefix_cache`); the LM head is applied at the judged positions alone.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        path: str,
        device: Any,
        max_tokens_per_batch: int,
        good_token: str = "+",
        bad_token: str = "-",
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ) -> None:
        super().__init__(model, tokenizer, path=path, device=device, max_tokens_per_batch=max_tokens_per_batch)
        self._init_prefix_cache(prefix_cache_bytes)
        self.good_token = good_token
        self.bad_token = bad_token
        self.good_id = label_token_id(tokenizer, good_token, role="good_token")
        self.bad_id = label_token_id(tokenizer, bad_token, role="bad_token")
        if self.good_id == self.bad_id:
            raise ValueError(f"good_token {good_token!r} and bad_token {bad_token!r} map to the same token id {self.good_id}")
        # Only the logits at score positions are needed; computing all of them costs batch x length x vocab floats.
        self._can_select_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def _cached_module(self) -> Any:
        # The decoder's hidden states: the LM head then runs at the judged positions only, not at every new token.
        return self.model.get_decoder()

    def _new_step_scores(self, prm_input: PRMInput, start: int, outputs: Any) -> list[float]:
        import torch

        rows = [position - start for position in prm_input.score_positions if position >= start]
        if not rows:
            return []
        with torch.inference_mode():
            logits = self.model.get_output_embeddings()(outputs[rows]).float()
            return torch.softmax(logits[:, [self.good_id, self.bad_id]], dim=-1)[:, 0].tolist()

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        import torch

        if self._use_prefix_cache(batch[0]):
            return self._incremental_probabilities(batch)
        wanted = sorted({position for prm_input in batch for position in prm_input.score_positions})
        with torch.inference_mode():
            if self._can_select_logits:
                keep = torch.tensor(wanted, dtype=torch.long, device=self.device)
                logits = self.model(**model_inputs, logits_to_keep=keep).logits
                column = {position: index for index, position in enumerate(wanted)}
            else:
                logits = self.model(**model_inputs).logits
                column = {position: position for position in wanted}
            pair = logits[..., [self.good_id, self.bad_id]].float()
        scores = []
        for row, prm_input in enumerate(batch):
            at_steps = pair[row, [column[position] for position in prm_input.score_positions]]
            scores.append(torch.softmax(at_steps, dim=-1)[:, 0].tolist())
        return scores
