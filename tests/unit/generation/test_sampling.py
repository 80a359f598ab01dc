"""Per-sample uniforms and inverse-CDF draws: exact frequencies, impossible tokens never drawn, keys per sample."""

from __future__ import annotations

import torch

from inference.generation.sampling import draw_tokens, prompt_occurrences, request_keys, row_uniforms


def test_draws_follow_the_probabilities_exactly_on_a_grid_of_uniforms():
    probabilities = torch.tensor([0.1, 0.0, 0.25, 0.65])
    grid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000  # midpoints of 1000 equal cells of [0, 1)
    tokens = draw_tokens(probabilities.expand(1000, 4), grid)
    assert torch.bincount(tokens, minlength=4).tolist() == [100, 0, 250, 650]
    # Unnormalized weights (a row's total is its scale) draw the same tokens.
    assert torch.equal(draw_tokens(3 * probabilities.expand(1000, 4), grid), tokens)


def test_a_uniform_at_the_top_never_draws_a_token_of_probability_zero():
    probabilities = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.2, 0.3, 0.5, 0.0]])
    almost_one = torch.full((3,), 1.0 - 2.0**-53, dtype=torch.float64)
    assert draw_tokens(probabilities, almost_one).tolist() == [1, 1, 2]
    # The boundary of a cell belongs to the cell above it; zero-probability cells are empty.
    assert draw_tokens(probabilities, torch.tensor([0.5, 0.0, 0.2], dtype=torch.float64)).tolist() == [1, 1, 1]


def test_prompt_occurrences_count_earlier_copies():
    assert prompt_occurrences([[1, 2], [3], [1, 2], [1, 2], [3, 4], [3]]) == [0, 0, 1, 2, 0, 1]


def test_a_sample_s_uniforms_depend_on_seed_prompt_occurrence_and_number_only():
    prompts = [[5, 6, 7], [8, 9], [5, 6, 7]]
    rows = [(0, 0), (0, 1), (1, 0), (2, 0)]
    table = row_uniforms(request_keys(3, prompts), rows, 6)
    assert table.shape == (4, 6) and table.dtype == torch.float64
    assert bool(((table >= 0) & (table < 1)).all())
    # The same prompt and sample number elsewhere in another call, or in a batch of its own: the same stream.
    alone = row_uniforms(request_keys(3, [[8, 9], [5, 6, 7]]), [(1, 1), (1, 0), (0, 0)], 6)
    assert torch.equal(alone[1], table[0]) and torch.equal(alone[0], table[1]) and torch.equal(alone[2], table[2])
    assert torch.equal(row_uniforms(request_keys(3, prompts), rows[3:], 6)[0], table[3])
    # The second copy of a prompt, another sample number or another seed: other streams.
    assert not torch.equal(table[3], table[0]) and not torch.equal(table[1], table[0])
    assert not torch.equal(row_uniforms(request_keys(4, prompts), rows, 6), table)
    # A longer table extends the same stream.
    assert torch.equal(row_uniforms(request_keys(3, prompts), rows, 9)[:, :6], table)
