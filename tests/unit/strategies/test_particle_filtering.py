"""Particle filtering on a scripted step tree: weights, ESS trigger, resampled ancestors, selection, compute, settings."""

import zlib
from collections import Counter

import numpy as np
import pytest

from data_prep.records import Problem
from inference.config import ConfigError, RunConfig, SweepConfig
from inference.strategies import make_settings, particle_filtering as pf
from inference.strategies.common import Ledger, call_seed
from inference.types import SamplingParams
from tests.fakes import ScriptedGenerator, TablePRMScorer

P = Problem(id="p/0", problem="What is 2 + 3?", answer="5", source="toy")
STEPS = {
    "": ["A good\n\n", "B bad\n\n", "C $\\boxed{5}$", "D bad\n\n"],
    "A good\n\n": ["A1 $\\boxed{5}$", "A2 mid\n\n", "A3 $\\boxed{7}$"],
    "A good\n\nA2 mid\n\n": ["A21 $\\boxed{9}$"],
}
SCORES = {"A good": 0.9, "B bad": 0.2, "C $\\boxed{5}$": 0.7, "D bad": 0.1, "A1 $\\boxed{5}$": 0.7,
          "A2 mid": 0.5, "A3 $\\boxed{7}$": 0.3, "A21 $\\boxed{9}$": 0.8}


def scripted():
    """A generator whose k-th ask of a prefix (across calls) gets that prefix's k-th scripted step."""
    asked = Counter()

    def script(problem, prefix, n):
        start = asked[prefix]
        asked[prefix] += n
        return STEPS[prefix][start:start + n]

    return ScriptedGenerator(script)


def odds_weights(scores):
    """softmax(logit(s)) = s / (1 - s), normalised: the T = 1 weights by hand."""
    odds = np.array([s / (1 - s) for s in scores])
    return odds / odds.sum()


def test_weights_are_softmax_of_logit_over_temperature():
    np.testing.assert_allclose(pf.particle_weights([0.9, 0.2, 0.7, 0.1], 1.0), odds_weights([0.9, 0.2, 0.7, 0.1]))
    sharp = pf.particle_weights([0.9, 0.5], 0.5)  # logit(0.5) = 0, logit(0.9) / 0.5 = 2 ln 9
    np.testing.assert_allclose(sharp, [81 / 82, 1 / 82])
    # Exact 0 / 1 scores (the exact checker) stay finite; an unscored particle counts as score 0.
    assert pf.particle_weights([1.0, 0.0, None], 1.0)[0] == pytest.approx(1.0)
    assert pf.effective_sample_size(np.full(4, 0.25)) == pytest.approx(4.0)
    assert pf.effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1.0)


class FixedRng:
    """Stands in for numpy's Generator: `random` returns the given draws."""

    def __init__(self, draws):
        self.draws = draws

    def random(self, size=None):
        return self.draws if size is not None else self.draws[0]


def test_resampling_rules_draw_exact_ancestors():
    weights = np.array([0.5, 0.25, 0.125, 0.125])
    # Systematic: one draw u = 0.4, points (u + k) / 4 = .1, .35, .6, .85 against cumulative .5, .75, .875, 1.
    assert pf.resample_indices(weights, "systematic", FixedRng([0.4])) == [0, 0, 1, 2]
    # Multinomial: four draws, sorted .1, .3, .6, .9.
    assert pf.resample_indices(weights, "multinomial", FixedRng(np.array([0.9, 0.1, 0.6, 0.3]))) == [0, 0, 1, 3]


def test_filter_resamples_when_ess_drops_and_keeps_finished_particles(unit_clock):
    settings = pf.Settings(n=4, seed=0, ess_threshold=0.5)  # systematic, weights at T = 1
    u = np.random.default_rng([0, zlib.crc32(P.id.encode())]).random()  # the problem's stream, seeded by id
    generator, scorer = scripted(), TablePRMScorer(SCORES)
    ledger = Ledger([P], generator, scorer)
    (population,) = pf.search(ledger, settings)

    # Iteration 0: weights by odds 9, 0.25, 7/3, 1/9 -> ESS 1.58 < 0.5 x 4: resampled. Cumulative weights
    # .7696, .7910, .9905, 1; points (u + k) / 4 with u = 0.4306: .108, .358, .608 on A, .858 on C.
    w0 = odds_weights([0.9, 0.2, 0.7, 0.1])
    first = population.history[0]
    assert first.ess == pytest.approx(1 / np.sum(w0 ** 2)) and first.ess == pytest.approx(1.5807, abs=1e-4)
    assert u == pytest.approx(0.4306, abs=1e-4) and first.resampled
    assert first.ancestors == (0, 0, 0, 2)
    # Iteration 1: the three copies of A are extended (C has its answer); odds 7/3, 1, 3/7, 7/3 -> ESS 3.29: kept.
    w1 = odds_weights([0.7, 0.5, 0.3, 0.7])
    second = population.history[1]
    assert (second.ess, second.resampled, second.ancestors) == (pytest.approx(1 / np.sum(w1 ** 2)), False,
                                                                (0, 1, 2, 3))
    # Iteration 2: only A2 is still live; then every particle ended and the loop stops.
    assert len(population.history) == 3 and not population.history[2].resampled
    assert population.resamplings == 1
    assert [p.steps for p in population.particles] == [
        ("A good", "A1 $\\boxed{5}$"), ("A good", "A2 mid", "A21 $\\boxed{9}$"), ("A good", "A3 $\\boxed{7}$"),
        ("C $\\boxed{5}$",),
    ]
    # One generate call per iteration: N first steps, then one step per live particle; seeds per call.
    assert [(len(c.requests), c.n) for c in generator.calls] == [(1, 4), (3, 1), (1, 1)]
    assert [c.params for c in generator.calls] == [SamplingParams(0.8, 1.0, 512, call_seed(0, i)) for i in range(3)]
    assert len(scorer.calls) == 3
    # Compute: 2 words per step generated, 8 + 6 + 2; PRM: 5 problem words + steps, 4 x 7 + 3 x 9 + 11.
    compute = ledger.compute[0]
    assert (compute.policy_tokens, compute.prm_tokens, compute.model_calls, compute.seconds) == (16, 66, 6, 6.0)


def test_weighted_and_best_selection_and_row():
    # Final scores .7 (5), .8 (9), .3 (7), .7 (5): answer 5 holds 2 x 7/3 of the odds, 9 holds 4.
    row = pf.run([P], scripted(), TablePRMScorer(SCORES), pf.Settings(n=4, seed=0, ess_threshold=0.5))[0]
    assert (row.strategy, row.n, row.beam_width, row.pred, row.correct) == ("particle_filtering", 4, None, "5", True)
    assert [c.answer for c in row.completions] == ["5", "9", "7", "5"]
    assert [c.agg_score for c in row.completions] == [0.7, 0.8, 0.3, 0.7]
    assert (row.compute.policy_tokens, row.compute.prm_tokens) == (16, 66)
    best = pf.run([P], scripted(), TablePRMScorer(SCORES),
                  pf.Settings(n=4, seed=0, ess_threshold=0.5, final_selection="best"))[0]
    assert best.pred == "9"


def test_ess_threshold_zero_never_resamples():
    generator = ScriptedGenerator({(P.problem, ""): STEPS[""], (P.problem, "A good\n\n"): ["A1 $\\boxed{5}$"],
                                   (P.problem, "B bad\n\n"): ["B1 $\\boxed{4}$"],
                                   (P.problem, "D bad\n\n"): ["D1 $\\boxed{3}$"]})
    table = SCORES | {"B1 $\\boxed{4}$": 0.1, "D1 $\\boxed{3}$": 0.1}
    ledger = Ledger([P], generator, TablePRMScorer(table))
    (population,) = pf.search(ledger, pf.Settings(n=4, ess_threshold=0.0))
    assert population.resamplings == 0
    assert [p.steps[0] for p in population.particles] == ["A good", "B bad", "C $\\boxed{5}$", "D bad"]


@pytest.mark.parametrize(("options", "message"), [
    ({"weight_temperature": 0}, "weight_temperature must be > 0, got 0"),
    ({"resampling": "stratified"}, "resampling must be 'multinomial' or 'systematic', got 'stratified'"),
    ({"ess_threshold": 1.5}, "ess_threshold must be in \\[0, 1\\], got 1.5"),
    ({"max_iterations": 0}, "max_iterations must be >= 1"),
])
def test_bad_settings_name_the_setting(options, message):
    with pytest.raises(ValueError, match=message):
        make_settings("particle_filtering", {"n": 4, **options})
    with pytest.raises(ConfigError, match=f"strategies.particle_filtering at N=4: {message}"):
        RunConfig(sweep=SweepConfig(strategies=("particle_filtering",), max_n=4),
                  strategies={"particle_filtering": options})


@pytest.mark.parametrize(("scores", "resampled"), [((0.9, 0.8, 0.8, 0.8), True), ((0.8, 0.8, 0.8, 0.8), False)])
def test_default_threshold_resamples_every_step_unless_weights_are_equal(scores, resampled):
    answers = ["$\\boxed{5}$ a", "$\\boxed{5}$ b", "$\\boxed{6}$ c", "$\\boxed{6}$ d"]
    generator = ScriptedGenerator({(P.problem, ""): answers})
    table = dict(zip((a.strip() for a in answers), scores))
    (population,) = pf.search(Ledger([P], generator, TablePRMScorer(table)), pf.Settings(n=4))
    (step,) = population.history  # every particle answered at once: one iteration
    assert step.resampled is resampled and (step.ess == pytest.approx(4.0)) is not resampled


GIBBS_STEPS = {
    # The k-th ask of a prefix (across calls) gets its k-th step: the second sweep's only new first step is W.
    "": ["W s\n\n", "R s\n\n", "W s\n\n"],
    "R s\n\n": ["R $\\boxed{5}$"] * 3,
}
GIBBS_SCORES = {"W s": 1e-9, "R s": 1 - 1e-9, "R $\\boxed{5}$": 1 - 1e-9}


def test_particle_gibbs_replays_the_reference_and_samples_only_the_other_slots():
    asked = Counter()

    def script(problem, prefix, n):
        start = asked[prefix]
        asked[prefix] += n
        return GIBBS_STEPS[prefix][start:start + n]

    generator, scorer = ScriptedGenerator(script), TablePRMScorer(GIBBS_SCORES)
    settings = pf.Settings(n=4, sweeps=2, seed=3)
    row = pf.run([P], generator, scorer, settings)[0]
    # Sweep 1 (2 particles): W and R; W's weight (clipped odds 1e-6 / (1 - 1e-6) against its inverse) is ~1e-12,
    # so both slots resample to R, which answers. Sweep 2: one free slot samples W next to the replayed reference
    # R, resamples to R (the reference's state) and extends that copy; the reference is never asked for or scored.
    assert [([r.prefix for r in call.requests], call.n) for call in generator.calls] == [
        ([""], 2), (["R s\n\n", "R s\n\n"], 1), ([""], 1), (["R s\n\n"], 1)]
    assert [call.step_lists for call in scorer.calls] == [
        (("W s",), ("R s",)), (("R s", "R $\\boxed{5}$"),) * 2, (("W s",),), (("R s", "R $\\boxed{5}$"),)]
    # Each sweep's calls have their own seeds: sweep 2 starts at call index max_iterations + 1.
    assert [call.params.seed for call in generator.calls] == [
        call_seed(3, 0), call_seed(3, 1), call_seed(3, 41), call_seed(3, 42)]
    assert [c.text for c in row.completions] == ["R s\n\nR $\\boxed{5}$"] * 2 and row.pred == "5"
    # Policy tokens: 2 words per sample, 6 samples; PRM: the 5 problem words + the steps' words per scored solution.
    assert (row.compute.policy_tokens, row.compute.prm_tokens) == (12, 3 * (5 + 2) + 3 * (5 + 4))
    assert row.settings["sweeps"] == 2


def test_one_sweep_is_the_plain_filter_and_bad_sweeps_name_the_rule():
    plain = pf.run([P], scripted(), TablePRMScorer(SCORES), pf.Settings(n=4, seed=2))[0]
    one = pf.run([P], scripted(), TablePRMScorer(SCORES), pf.Settings(n=4, seed=2, sweeps=1))[0]
    assert (plain.completions, plain.pred, plain.compute.policy_tokens) == (one.completions, one.pred,
                                                                            one.compute.policy_tokens)
    with pytest.raises(ValueError, match="n=4 must be a multiple of sweeps=4 with at least 2 particles per sweep"):
        make_settings("particle_filtering", {"n": 4, "sweeps": 4})
    with pytest.raises(ValueError, match="sweeps must be an integer >= 1, got 0"):
        make_settings("particle_filtering", {"n": 4, "sweeps": 0})
