"""run_sweep with scripted fakes: rows per (problem, strategy, N), resume, sample sharing, shards, chunking."""

from __future__ import annotations

import dataclasses

import pytest

from data_prep.records import Problem
from inference.config import CliValue, RunConfig, parse_config
from inference.results import read_result_dicts, read_results, row_key
from inference.runner import check_prm_path, needs_prm, plan_jobs, results_path, run_sweep, select_shard
from tests.fakes import ScriptedGenerator, TablePRMScorer
from tests.repo_files import REPO

FINAL = "Therefore, the final answer is: $\\boxed{{{}}}$."


def problems(count: int = 5) -> list[Problem]:
    return [Problem(id=f"p{i}", problem=f"Start at {i}. Add 1.", answer=str(i + 1), level=1 + i % 5, source="t")
            for i in range(count)]


def script(problem: str, prefix: str, n: int) -> list[str]:
    """Full solutions from an empty prefix (sample k answers right when k is even); a final step otherwise."""
    start = int(problem.split()[2].rstrip("."))
    if prefix == "":
        return [f"Step {k}: add one.\n\n" + FINAL.format(start + 1 + k % 2) for k in range(n)]
    return [FINAL.format(start + 1 + k % 3) for k in range(n)]


def scores(problem: str, steps: tuple[str, ...]) -> list[float]:
    """A PRM that likes right answers: 0.9 for a final step with the right number, 0.2 for a wrong one."""
    right = FINAL.format(int(problem.split()[2].rstrip(".")) + 1)
    return [0.5 if "boxed" not in s else (0.9 if s == right else 0.2) for s in steps]


def fakes() -> tuple[ScriptedGenerator, TablePRMScorer]:
    return ScriptedGenerator(script), TablePRMScorer(scores)


def config(**overrides: str) -> RunConfig:
    base = {"sweep.max_n": "4", "chunk_size": "2"}
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return parse_config(RunConfig, None, {k: CliValue(v) for k, v in base.items()})


def essence(path) -> list[tuple]:
    """Rows without wall time: what must not change between an interrupted and an uninterrupted run."""
    out = []
    for _, data in read_result_dicts(path):
        data = dict(data)
        data["compute"] = {k: v for k, v in data["compute"].items() if k != "seconds"}
        out.append((row_key(data), repr(sorted(data.items()))))
    return sorted(out)


def test_sweep_writes_one_row_per_problem_strategy_and_n(tmp_path):
    path = tmp_path / "results.jsonl"
    generator, scorer = fakes()
    summary = run_sweep(config(), problems(), generator, scorer, path, progress=False)
    rows = read_results(path)
    keys = [row_key(r) for r in rows]
    expected = {(p.id, s, n, bw, 0) for p in problems()
                for s, n, bw in [(s, n, None) for s in ("majority", "best_of_n", "weighted_best_of_n") for n in (1, 2, 4)]
                + [("beam_search", 4, 4), ("dvts", 4, 4), ("particle_filtering", 4, None), ("mcts", 4, None),
                   ("adaptive_majority", 4, None)]}
    assert len(keys) == len(set(keys)) == 5 * 14
    assert set(keys) == expected
    assert (summary.rows_written, summary.rows_skipped) == (70, 0)
    assert summary.correct == sum(r.correct for r in rows)
    best4 = [r for r in rows if r.strategy == "best_of_n" and r.n == 4]
    assert all(r.pred == r.gold and r.correct for r in best4)  # the PRM likes the right answers
    assert all(r.compute.policy_tokens > 0 for r in rows)
    # Every strategy but the unweighted adaptive vote calls the PRM.
    assert all((r.compute.prm_tokens > 0) == (r.strategy != "adaptive_majority") for r in rows)


def test_second_run_resumes_without_model_calls(tmp_path):
    path = tmp_path / "results.jsonl"
    run_sweep(config(), problems(), *fakes(), path, progress=False)
    before = path.read_bytes()
    generator, scorer = fakes()
    summary = run_sweep(config(), problems(), generator, scorer, path, progress=False)
    assert (summary.rows_written, summary.rows_skipped) == (0, 70)
    assert generator.calls == [] and scorer.calls == []
    assert path.read_bytes() == before


def test_extending_the_sweep_runs_only_the_new_budgets(tmp_path):
    path = tmp_path / "results.jsonl"
    run_sweep(config(**{"sweep.strategies": "best_of_n"}), problems(), *fakes(), path, progress=False)
    generator, scorer = fakes()
    summary = run_sweep(config(**{"sweep.strategies": "best_of_n", "sweep.max_n": "8"}), problems(), generator, scorer,
                        path, progress=False)
    assert (summary.rows_written, summary.rows_skipped) == (5, 15)
    assert {call.n for call in generator.calls} == {8}


class Crash(Exception):
    pass


class CrashingGenerator(ScriptedGenerator):
    """Raises on its `crash_at`-th generate call, like a process killed mid-run."""

    def __init__(self, crash_at: int) -> None:
        super().__init__(script)
        self.crash_at = crash_at

    def generate(self, requests, *, n, params, stop=None):
        if len(self.calls) + 1 == self.crash_at:
            raise Crash()
        return super().generate(requests, n=n, params=params, stop=stop)


@pytest.mark.parametrize("crash_at", [1, 2, 4, 7])
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, crash_at):
    whole = tmp_path / "whole.jsonl"
    run_sweep(config(), problems(), *fakes(), whole, progress=False)
    path = tmp_path / "results.jsonl"
    with pytest.raises(Crash):
        run_sweep(config(), problems(), CrashingGenerator(crash_at), TablePRMScorer(scores), path, progress=False)
    written_before = len(read_result_dicts(path)) if path.exists() else 0
    generator, scorer = fakes()
    summary = run_sweep(config(), problems(), generator, scorer, path, progress=False)
    assert summary.rows_skipped == written_before
    assert summary.rows_written == 70 - written_before
    assert essence(path) == essence(whole)


class RememberingGenerator(ScriptedGenerator):
    """Runs fewer forward tokens for a prompt it saw since its cache was last dropped, like the transformers
    backend's reused keys and values; `forget_cached` drops them."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__(script)
        self.seen: set[tuple[str, str]] = set()
        self.crash_at = crash_at

    def forget_cached(self) -> None:
        self.seen.clear()

    def generate(self, requests, *, n, params, stop=None):
        if self.crash_at is not None and len(self.calls) + 1 == self.crash_at:
            raise Crash()
        outputs = super().generate(requests, n=n, params=params, stop=stop)
        result = []
        for request, completions in zip(requests, outputs):
            prefill = 0 if (request.problem, request.prefix) in self.seen else 10
            self.seen.add((request.problem, request.prefix))
            result.append([dataclasses.replace(c, forward_tokens=c.num_tokens + prefill) for c in completions])
        return result


@pytest.mark.parametrize("crash_at", [2, 5])
def test_a_resumed_run_counts_the_forward_tokens_of_an_uninterrupted_one(tmp_path, crash_at):
    """A policy that keeps state between calls forgets it at each chunk, so a chunk's counters do not depend on
    whether the run started there."""
    settings = config(**{"sweep.strategies": "majority,beam_search", "strategies.beam_search.beam_width": "2"})
    whole = tmp_path / "whole.jsonl"
    run_sweep(settings, problems(), RememberingGenerator(), TablePRMScorer(scores), whole, progress=False)
    path = tmp_path / "results.jsonl"
    with pytest.raises(Crash):
        run_sweep(settings, problems(), RememberingGenerator(crash_at), TablePRMScorer(scores), path, progress=False)
    run_sweep(settings, problems(), RememberingGenerator(), TablePRMScorer(scores), path, progress=False)
    assert essence(path) == essence(whole)
    forward = [data["compute"]["policy_forward_tokens"] for _, data in read_result_dicts(whole)]
    assert len(set(forward)) > 1  # the counters do depend on the cache, so the comparison can fail


def test_torn_tail_from_a_kill_is_recomputed_not_duplicated(tmp_path):
    whole = tmp_path / "whole.jsonl"
    run_sweep(config(), problems(), *fakes(), whole, progress=False)
    path = tmp_path / "results.jsonl"
    lines = whole.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:7]) + b"\n" + lines[7][:40])  # 7 whole rows and a torn one
    summary = run_sweep(config(), problems(), *fakes(), path, progress=False)
    assert (summary.rows_skipped, summary.rows_written) == (7, 63)
    assert essence(path) == essence(whole)


def test_resume_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    run_sweep(config(), problems(), *fakes(), path, progress=False)
    with pytest.raises(ValueError, match=r"holds best_of_n N=\d rows made with other settings \(temperature: 0.8 -> 0.5\)"):
        run_sweep(config(**{"strategies.best_of_n.temperature": "0.5"}), problems(), *fakes(), path, progress=False)
    other = ScriptedGenerator(script, name="other-policy")
    with pytest.raises(ValueError, match="rows of policy 'scripted-policy' but this run's policy is 'other-policy'"):
        run_sweep(config(), problems(), other, TablePRMScorer(scores), path, progress=False)


def test_a_new_seed_adds_rows_next_to_the_old_ones(tmp_path):
    path = tmp_path / "results.jsonl"
    run_sweep(config(**{"sweep.strategies": "majority"}), problems(), *fakes(), path, progress=False)
    summary = run_sweep(config(**{"sweep.strategies": "majority", "seed": "1"}), problems(), *fakes(), path, progress=False)
    assert (summary.rows_written, summary.rows_skipped) == (15, 0)
    assert {row_key(r)[4] for r in read_results(path)} == {0, 1}


def test_shared_samples_generate_once_per_chunk_and_nest_across_n(tmp_path):
    sampling = "majority,best_of_n,weighted_best_of_n"
    shared_gen, shared_scorer = fakes()
    run_sweep(config(**{"sweep.strategies": sampling}), problems(), shared_gen, shared_scorer, tmp_path / "a.jsonl",
              progress=False)
    alone_gen, alone_scorer = fakes()
    run_sweep(config(**{"sweep.strategies": sampling, "share_samples": "false"}), problems(), alone_gen, alone_scorer,
              tmp_path / "b.jsonl", progress=False)
    # 5 problems in chunks of 2 -> 3 chunks; shared: one call at N=4 per chunk; alone: 3 strategies x 3 N per chunk.
    assert [call.n for call in shared_gen.calls] == [4, 4, 4]
    assert len(alone_gen.calls) == 27
    assert len(shared_scorer.calls) == 3
    shared = {row_key(r): r for r in read_results(tmp_path / "a.jsonl")}
    alone = {row_key(r): r for r in read_results(tmp_path / "b.jsonl")}
    assert shared.keys() == alone.keys()
    for key, row in shared.items():
        other = alone[key]
        assert (row.completions, row.pred, row.correct) == (other.completions, other.pred, other.correct)
        assert dataclasses.replace(row.compute, seconds=0) == dataclasses.replace(other.compute, seconds=0)
        biggest = shared[(key[0], "best_of_n", 4, None, 0)]
        assert row.completions == biggest.completions[: key[2]]


def test_identical_problem_texts_in_one_chunk_do_not_share_samples():
    from inference.runner import SamplePool
    from inference.types import GenerationRequest, SamplingParams

    counter = iter(range(100))
    pool = SamplePool.wrap(ScriptedGenerator(lambda p, prefix, n: [f"s{next(counter)}" for _ in range(n)]), None)
    request = GenerationRequest("same text")
    params = SamplingParams(max_tokens=5, seed=0)
    first = pool.generator.generate([request, request], n=2, params=params)
    assert [c.text for c in first[0]] != [c.text for c in first[1]]
    again = pool.generator.generate([request, request], n=1, params=params)
    assert [a[0] for a in again] == [f[0] for f in first]
    assert pool.generator.calls == 1


def counting_script():
    """A script whose every sample is new text (counted), so a replayed sample is told from a redrawn one."""
    counter = iter(range(10_000))
    return lambda problem, prefix, n: [f"Step: s{next(counter)}.\n\n" + FINAL.format(k % 3) for k in range(n)]


def test_samples_from_an_earlier_run_are_scored_not_drawn_again(tmp_path):
    sampling = "majority,best_of_n,weighted_best_of_n"
    first_gen = ScriptedGenerator(counting_script())
    run_sweep(config(**{"sweep.strategies": "majority", "strategies.majority.score_with_prm": "false"}), problems(),
              first_gen, None, tmp_path / "a" / "results.jsonl", progress=False)
    stored = tmp_path / "a" / "samples.jsonl"
    assert len(stored.read_text().splitlines()) == 5  # one line per problem's request, N = 4 samples each
    # The second run's own policy would draw other texts; with samples_from it draws nothing and its rows are
    # those of a run that drew the first run's samples, token counters included.
    second_gen = ScriptedGenerator(counting_script())
    run_sweep(config(**{"sweep.strategies": sampling, "samples_from": str(tmp_path / "a")}), problems(), second_gen,
              TablePRMScorer(scores), tmp_path / "b" / "results.jsonl", progress=False)
    assert second_gen.calls == []
    first = {row_key(r): r for r in read_results(tmp_path / "a" / "results.jsonl")}
    second = {row_key(r): r for r in read_results(tmp_path / "b" / "results.jsonl")}
    for key, row in second.items():
        source = first[(key[0], "majority", key[2], None, 0)]
        assert [c.text for c in row.completions] == [c.text for c in source.completions]
        assert (row.compute.policy_tokens, row.compute.policy_forward_tokens) == (
            source.compute.policy_tokens, source.compute.policy_forward_tokens)
    assert all(row.completions[0].agg_score is not None for row in second.values())
    # The second run's samples file holds what its rows are made of, so it can feed a third run in turn.
    assert (tmp_path / "b" / "samples.jsonl").read_text() == stored.read_text()


def test_samples_from_with_other_sampling_settings_draws_them(tmp_path, caplog):
    run_sweep(config(**{"sweep.strategies": "majority"}), problems(), *fakes(), tmp_path / "a" / "results.jsonl",
              progress=False)
    generator = ScriptedGenerator(script)
    with caplog.at_level("WARNING"):
        run_sweep(config(**{"sweep.strategies": "best_of_n", "strategies.best_of_n.temperature": "0.5",
                            "samples_from": str(tmp_path / "a")}),
                  problems(), generator, TablePRMScorer(scores), tmp_path / "b" / "results.jsonl", progress=False)
    assert len(generator.calls) == 3  # every chunk drawn
    assert "none of this run's requests were there" in caplog.text


def test_samples_from_another_policy_is_refused_naming_the_line(tmp_path):
    run_sweep(config(**{"sweep.strategies": "majority"}), problems(), *fakes(), tmp_path / "a" / "results.jsonl",
              progress=False)
    other = ScriptedGenerator(script, name="other-policy")
    with pytest.raises(ValueError, match=r"samples\.jsonl: line 1: samples of policy 'scripted-policy', but this "
                                         r"run's policy is 'other-policy'"):
        run_sweep(config(**{"sweep.strategies": "best_of_n", "samples_from": str(tmp_path / "a")}), problems(),
                  other, TablePRMScorer(scores), tmp_path / "b" / "results.jsonl", progress=False)
    assert not (tmp_path / "b" / "results.jsonl").exists()


@pytest.mark.parametrize("line, message", [
    ('{"policy": "scripted-policy"}', "missing problem, prefix"),
    ('{"policy": "p", "problem": "x", "prefix": "", "temperature": 0.8, "top_p": 1, "max_tokens": 9, "seed": 0, '
     '"stop": null, "occurrence": 0, "completions": [{"text": "a", "num_tokens": -1, "finish_reason": "eos", '
     '"forward_tokens": null}]}', r"completions\[0\]: num_tokens"),
    ('{"policy": "p", "problem": "x", "prefix": "", "temperature": 0.8, "top_p": 1, "max_tokens": 9, "seed": 0, '
     '"stop": null, "occurrence": 0, "completions": [{"text": "a", "num_tokens": 1, "finish_reason": "done", '
     '"forward_tokens": null}]}', "finish_reason must be one of stop, eos, length"),
    ('{"policy": "p", "problem": "x", "prefix": "", "temperature": -1, "top_p": 1, "max_tokens": 9, "seed": 0, '
     '"stop": null, "occurrence": 0, "completions": []}', "sampling parameters: temperature must be >= 0"),
])
def test_a_malformed_samples_line_is_refused_naming_file_line_and_field(tmp_path, line, message):
    from inference.samples import load_samples

    path = tmp_path / "samples.jsonl"
    path.write_text('{"policy": "p", "problem": "y", "prefix": "", "temperature": 0.8, "top_p": 1, "max_tokens": 9, '
                    '"seed": 0, "stop": null, "occurrence": 0, "completions": []}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"samples\.jsonl: line 2: .*{message}"):
        load_samples(path, "p", ["x"])


def test_samples_from_a_directory_without_samples_or_without_sharing_is_refused(tmp_path):
    from inference.config import ConfigError
    from inference.samples import sample_files

    with pytest.raises(FileNotFoundError, match="no samples\\*.jsonl in this directory"):
        sample_files(tmp_path)
    with pytest.raises(ConfigError, match="samples_from needs share_samples: true"):
        config(**{"samples_from": str(tmp_path), "share_samples": "false"})
    with pytest.raises(ConfigError, match="the sweep runs none of them"):
        config(**{"samples_from": str(tmp_path), "sweep.strategies": "beam_search"})


def test_chunks_bound_the_problems_per_model_call(tmp_path):
    generator, scorer = fakes()
    run_sweep(config(**{"sweep.strategies": "beam_search", "chunk_size": "3"}), problems(7), generator, scorer,
              tmp_path / "r.jsonl", progress=False)
    problems_per_call = [len({r.problem for r in call.requests}) for call in generator.calls]
    assert max(problems_per_call) == 3
    assert sum(1 for call in generator.calls if call.requests[0].prefix == "") == 3  # chunks of 3, 3, 1


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_cover_every_problem_exactly_once(count):
    items = problems(23)
    shards = [select_shard(items, f"{i}/{count}") for i in range(count)]
    ids = [p.id for shard in shards for p in shard]
    assert sorted(ids) == sorted(p.id for p in items)
    assert len(ids) == len(set(ids))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert select_shard(items, f"0/{count}") == select_shard(items, f"0/{count}")
    assert [p.id for p in select_shard(items, "1/5")] == ["p1", "p6", "p11", "p16", "p21"]
    assert select_shard(items, None) == items


def test_result_file_names_follow_the_shard():
    assert results_path(config()).name == "results.jsonl"
    assert str(results_path(config(shard="2/8", output_dir="out"))) == "out/results.shard-2-of-8.jsonl"


def test_plan_orders_strategies_as_the_sweep_and_n_ascending():
    jobs = plan_jobs(config(**{"sweep.strategies": "dvts,majority"}))
    assert [(j.strategy, j.n) for j in jobs] == [("dvts", 4), ("majority", 1), ("majority", 2), ("majority", 4)]
    assert jobs[0].settings.beam_width == 4 and jobs[0].settings.seed == 0


def test_prm_path_is_checked_only_when_a_strategy_uses_the_prm(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prm.path='.*nowhere' is not a directory"):
        check_prm_path(config(**{"prm.path": str(tmp_path / "nowhere")}))
    with pytest.raises(ValueError, match=r"has no ttc_prm.json and no prm_style was given"):
        check_prm_path(config(**{"prm.path": str(tmp_path)}))  # a directory, but not a PRM: refused before the policy
    check_prm_path(config(**{"prm.path": str(REPO / "checkpoints" / "prm-verifier")}))
    vote_only = config(**{"sweep.strategies": "majority", "strategies.majority.score_with_prm": "false",
                          "prm.path": str(tmp_path / "nowhere")})
    assert not needs_prm(vote_only)
    check_prm_path(vote_only)
    assert needs_prm(config(**{"sweep.strategies": "majority"}))


def test_prm_backend_reaches_the_scorer_loader(monkeypatch):
    import inference.scoring.loader as loader
    from inference.runner import build_scorer

    seen = {}
    monkeypatch.setattr(loader, "load_scorer", lambda path, **options: seen.update(options, path=path) or
                        TablePRMScorer(scores))
    build_scorer(config(**{"sweep.strategies": "best_of_n", "prm.path": "some/prm", "prm.backend": "vllm",
                           "prm.device": "cuda", "prm.gpu_memory_utilization": "0.3"}))
    assert (seen["path"], seen["backend"], seen["gpu_memory_utilization"]) == ("some/prm", "vllm", 0.3)
    seen.clear()
    build_scorer(config(**{"sweep.strategies": "best_of_n", "prm.path": "some/prm"}))
    assert "backend" not in seen  # the transformers scorer is the loader's default
