"""Unlabeled text for calibrating, distilling and evaluating text models.

No labelled text set is available offline, so ``build_corpus`` makes one from the prose that
is already on the machine: the package descriptions (``*.dist-info/METADATA``, i.e. their
READMEs) and docs of the installed Python packages, and ``/usr/share/doc``. It strips markup,
splits into sentences, keeps English-looking ones of a sensible length, removes duplicates
and returns them in a fixed order (sorted by a hash), so the same machine gives the same corpus.

``read_text_samples`` reads a user's text: a ``.txt`` file or a folder of ``.txt`` files, one
sample per line (``--calib-data`` / ``--dataset`` for text models).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import site
import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DataError

CORPUS = "site-docs"  # the data-set name of the built corpus on the command line
MAX_FILE_BYTES = 2 * 2**20  # per file (also the cap on a .gz file's decompressed size)
MAX_LINE_CHARS = 10_000
DOC_NAMES = re.compile(r"^(README|CHANGES|CHANGELOG|HISTORY|NEWS|USAGE|TUTORIAL)[^/]*$|\.(md|rst|txt)(\.gz)?$", re.I)
_CODE_BLOCK = re.compile(r"```.*?```|~~~.*?~~~|^\s*(>>>|\$ |\.\. ).*$", re.S | re.M)
_MARKUP = re.compile(r"https?://\S+|`+[^`]*`+|<[^>]{0,200}>|!?\[([^\]]*)\]\([^)]*\)|[*_#|=~^]{2,}|:\w+:")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z][a-z]+")


def _read_bounded(path: Path) -> str:
    """A file's text, at most ``MAX_FILE_BYTES`` (decompressed, for ``.gz``); unreadable: ''."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile):
        return ""
    return data.decode("utf-8", errors="ignore")


def default_sources() -> list[Path]:
    """The installed packages' folders (this interpreter's site-packages) and ``/usr/share/doc``."""
    roots = {Path(sysconfig.get_paths()["purelib"]), *map(Path, site.getsitepackages()), Path("/usr/share/doc")}
    return sorted(r for r in roots if r.is_dir())


def doc_files(roots: Iterable[Path], max_depth: int = 2) -> list[Path]:
    """Package METADATA files and README/.md/.rst/.txt docs at most ``max_depth`` folders deep."""
    found = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            depth = len(Path(folder).relative_to(root).parts)
            if depth >= max_depth:
                dirs.clear()
            dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__", "tests"))]
            for name in files:
                if name == "METADATA" or (DOC_NAMES.search(name) and "LICENSE" not in name.upper()
                                          and "COPYING" not in name.upper() and "entry_points" not in name):
                    found.add(Path(folder) / name)
    return sorted(found)


def sentences_of(text: str) -> Iterator[str]:
    """Prose sentences of a README-like text: code, URLs and markup removed, paragraphs joined."""
    text = _CODE_BLOCK.sub(" ", text)
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [ln for ln in paragraph.splitlines() if not re.match(r"^\s*([A-Z][\w-]*: |[-=*#+|]{3,})", ln)]
        flat = " ".join(_MARKUP.sub(lambda m: m.group(1) or " ", ln) for ln in lines)
        for s in _SENTENCE_END.split(re.sub(r"\s+", " ", flat).strip()):
            yield s.strip(" -*>+")


def is_prose(sentence: str, min_words: int = 6, max_words: int = 40) -> bool:
    words = sentence.split()
    if not (min_words <= len(words) <= max_words) or not sentence[:1].isupper() or sentence[-1:] not in ".!?":
        return False
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    return letters >= 0.9 * len(sentence) and len(_WORD.findall(sentence)) >= 0.7 * len(words)


def build_corpus(roots: Iterable[str | os.PathLike] | None = None, limit: int | None = None,
                 min_words: int = 6, max_words: int = 40) -> list[str]:
    """Deduplicated prose sentences from the docs under ``roots`` (default: ``default_sources()``),
    in a deterministic order (by SHA-1, which mixes the sources); at most ``limit``."""
    seen: dict[str, str] = {}
    for path in doc_files([Path(r) for r in roots] if roots is not None else default_sources()):
        for s in sentences_of(_read_bounded(path)):
            key = re.sub(r"\W+", " ", s.lower()).strip()
            if key not in seen and is_prose(s, min_words, max_words):
                seen[key] = s
    ordered = [s for _, s in sorted((hashlib.sha1(k.encode()).hexdigest(), s) for k, s in seen.items())]
    if not ordered:
        raise DataError("found no prose sentences in the installed packages' docs; pass a .txt file instead")
    return ordered[:limit]


def _txt_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*.txt") if p.is_file())
        if files:
            return files
        raise DataError(f"{source}: no .txt files in this folder (text data is one sample per line in .txt files)")
    raise DataError(f"text data not found: {source} (give a .txt file, a folder of .txt files, or {CORPUS!r})")


def read_text_samples(source: str | os.PathLike, limit: int | None = None) -> list[str]:
    """Non-empty lines (stripped) of a ``.txt`` file or of every ``.txt`` under a folder (sorted
    by path), at most ``limit``; ``"site-docs"`` is the built corpus (``build_corpus``)."""
    if str(source) == CORPUS:
        return build_corpus(limit=limit)
    out: list[str] = []
    for path in _txt_files(Path(source)):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.strip()[:MAX_LINE_CHARS]
                    if line:
                        out.append(line)
                    if limit is not None and len(out) >= limit:
                        return out
        except OSError as e:
            raise DataError(f"{path}: cannot read it ({e.strerror})") from None
    if not out:
        raise DataError(f"{source}: no text (one sample per line, empty lines are skipped)")
    return out


def write_corpus(path: str | os.PathLike, sentences: Iterable[str]) -> Path:
    from .._io import atomic_write_text

    return atomic_write_text(path, "".join(s.replace("\n", " ") + "\n" for s in sentences))
