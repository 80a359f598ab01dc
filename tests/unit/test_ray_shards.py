"""scripts/ray_shards.py's driver on a fake Ray: flags, task resources, failed shards, and the missing-ray error."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.repo_files import load_repo_file

ray_shards = load_repo_file("scripts/ray_shards.py", "ray_shards")


class FakeTaskError(Exception):
    """Ray's RayTaskError: the task's own exception as `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"task failed: {cause!r}")
        self.cause = cause


class FakeRef:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome


class FakeRay(types.ModuleType):
    """The Ray calls the script makes, with each task run inline when submitted."""

    def __init__(self, resources: dict[str, float]) -> None:
        super().__init__("ray")
        self.resources = resources
        self.exceptions = types.SimpleNamespace(RayError=FakeTaskError)
        self.init_kwargs: dict | None = None
        self.task_options: dict | None = None
        self.task_args: list[tuple] = []
        self.shut_down = False

    def init(self, **kwargs: Any) -> None:
        self.init_kwargs = kwargs

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def remote(self, function: Any) -> Any:
        ray = self

        class Task:
            def options(self, **options: Any) -> Task:
                ray.task_options = options
                return self

            def remote(self, *args: Any) -> FakeRef:
                ray.task_args.append(args)
                try:
                    return FakeRef(function(*args))
                except Exception as error:  # noqa: BLE001 - Ray hands it back from get
                    return FakeRef(FakeTaskError(error))

        return Task()

    def wait(self, refs: list[FakeRef], num_returns: int) -> tuple[list, list]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: FakeRef) -> Any:
        if isinstance(ref.outcome, FakeTaskError):
            raise ref.outcome
        return ref.outcome

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        # A shard fails at once on the missing problem file (the driver does not read it).
        "benchmark": {"name_or_path": str(tmp_path / "no-such-problems.jsonl")},
        "sweep": {"strategies": ["majority"], "n_values": [1], "min_n_by_strategy": {}},
        "strategies": {"majority": {"score_with_prm": False}},
        "output_dir": str(tmp_path / "out"),
    }), encoding="utf-8")
    return path


def install(monkeypatch, resources: dict[str, float]) -> FakeRay:
    fake = FakeRay(resources)
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch, capsys, config):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert ray_shards.main(["--config", str(config), "--shards", "2"]) == 2
    assert capsys.readouterr().err == "ray_shards: error: ray is not installed; install the ray extra: " \
                                      "pip install -e '.[ray]'\n"


@pytest.mark.parametrize(("extra", "expected"), [
    (["--shards", "2", "--shard", "0/2"], "--shard is set here for each shard; give --shards K instead"),
    (["--shards", "0"], "--shards 0: need k >= 1"),
    (["--shards", "2", "--sed", "1"], "flag --sed is not known; did you mean 'seed'?"),
    (["--shards", "2", "--gpus-per-shard", "1"], "flags use underscores: --gpus_per_shard"),
])
def test_bad_flags_fail_in_one_line_before_ray_starts(monkeypatch, capsys, config, extra, expected):
    fake = install(monkeypatch, {"CPU": 2})
    assert ray_shards.main(["--config", str(config), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ray_shards: error: ") and expected in err
    assert fake.init_kwargs is None


def test_a_failing_shard_names_itself_and_its_log_and_nothing_is_merged(monkeypatch, capsys, config, tmp_path):
    fake = install(monkeypatch, {"CPU": 2})
    assert ray_shards.main(["--config", str(config), "--shards", "2", "--num_cpus", "2", "--seed", "5"]) == 1
    err = capsys.readouterr().err.splitlines()
    out = tmp_path / "out"
    for i in (0, 1):  # both ran to their end (the real ttc-infer run), each reported with its own error
        log = out / "logs" / f"shard-{i}-of-2.log"
        [line] = [line for line in err if f"shard {i}/2 failed" in line]
        assert line.startswith(f"ray_shards: error: shard {i}/2 failed (exit 1): ttc-infer: error: ")
        assert "no-such-problems.jsonl" in line and line.endswith(f"; log: {log}")
        assert "no-such-problems.jsonl" in log.read_text(encoding="utf-8")
    assert not (out / "merged.jsonl").exists() and not (out / "eval").exists()
    assert fake.shut_down
    assert fake.init_kwargs == {"num_cpus": 2, "include_dashboard": False, "object_store_memory": 100 * 2**20}
    assert fake.task_options == {"num_cpus": 1.0, "num_gpus": 0.0, "max_retries": 3,
                                 "retry_exceptions": [ray_shards.ShardStopped]}
    commands = [args[0] for args in fake.task_args]
    assert [command[3:] for command in commands] == [
        ["run", "--config", str(config), "--seed", "5", "--shard", f"{i}/2"] for i in (0, 1)]


def test_gpus_per_shard_defaults_to_one_on_a_cluster_with_gpus(monkeypatch, capsys, config):
    fake = install(monkeypatch, {"CPU": 64, "GPU": 8})
    monkeypatch.setattr(ray_shards, "run_shard", lambda command, cwd, log: 2)
    assert ray_shards.main(["--config", str(config), "--shards", "3", "--address", "auto"]) == 1
    assert fake.init_kwargs == {"address": "auto"}
    assert fake.task_options["num_gpus"] == 1.0
    assert len(fake.task_args) == 3
    assert ray_shards.main(["--config", str(config), "--shards", "1", "--gpus_per_shard", "0.5"]) == 1
    assert fake.task_options["num_gpus"] == 0.5


def test_a_shard_stopped_by_a_signal_is_retried_by_ray_and_reported_when_it_gives_up(monkeypatch, capsys,
                                                                                     config, tmp_path):
    install(monkeypatch, {"CPU": 2})
    log = tmp_path / "shard.log"
    with pytest.raises(ray_shards.ShardStopped):
        ray_shards.run_shard([sys.executable, "-c", "import sys; print('halfway'); sys.exit(143)"], str(tmp_path),
                             str(log))
    assert log.read_text(encoding="utf-8").splitlines()[-1] == "halfway"
    assert ray_shards.run_shard([sys.executable, "-c", "import sys; sys.exit(1)"], str(tmp_path), str(log)) == 1

    def stopped(command: list[str], cwd: str, log: str) -> int:
        raise ray_shards.ShardStopped("stopped (exit 143)")

    monkeypatch.setattr(ray_shards, "run_shard", stopped)
    assert ray_shards.main(["--config", str(config), "--shards", "1"]) == 1
    assert "ray_shards: error: shard 0/1 failed (stopped (exit 143)); log: " in \
        capsys.readouterr().err
