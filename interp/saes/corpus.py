"""An offline text corpus for SAE training: English prose from Debian documentation packages.

No model hub or dataset hub is reachable on the project machines, so the embedded models' SAEs
are trained on text that installs from the OS package index. The default is the reStructuredText
source of the Python 3.11 documentation (Debian package `python3.11-doc`, installed under
`/usr/share/doc/python3.11/html/_sources`): ~500 files, ~1.4M words of English technical prose.

`read_corpus` keeps prose paragraphs only (markup directives, tables, code blocks and headings
are dropped), and `Corpus.provenance` records where the text came from: the package and its
version, the number of files and paragraphs, and a digest of the text itself, so an SAE's
metadata says exactly what it was trained on.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEBIAN_PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
DEBIAN_PACKAGE = "python3.11-doc"

_MARKUP = re.compile(r"^\s*(\.\.|::|[=\-~^\"'`#*+]{3,}\s*$|\+[-=+]+\+|\|)")
_ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`name <target>` -> name
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")  # `text <url>`_ -> text
_LETTERS = re.compile(r"[A-Za-z]")


def clean_paragraph(block: str) -> str | None:
    """One paragraph of reST as plain prose, or None when it is markup, code or a heading."""
    lines = block.splitlines()
    if not lines or lines[0].startswith((" ", "\t")) or any(_MARKUP.match(x) for x in lines):
        return None
    text = " ".join(x.strip() for x in lines)
    text = _ROLE.sub(r"\1", _LINK.sub(r"\1", text)).replace("``", "").replace("**", "")
    words = text.split()
    if len(words) < 8 or len(_LETTERS.findall(text)) < 0.6 * len(text):
        return None
    return text.rstrip(":") + ("" if text.endswith((".", ":", "?", "!")) else ".")


@dataclass
class Corpus:
    """Documents of plain text and where they came from."""

    documents: list[str]
    source: str
    package: str | None = None
    files: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for doc in self.documents:
            h.update(doc.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]

    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "package": self.package,
            "package_version": _debian_version(self.package) if self.package else None,
            "files": self.files,
            "documents": len(self.documents),
            "words": sum(len(d.split()) for d in self.documents),
            "text_sha256_16": self.digest,
            **self.extra,
        }

    def split(self, held_out: float, seed: int = 0) -> tuple[Corpus, Corpus]:
        """(train, held-out) by document, shuffled with `seed`."""
        if not 0 < held_out < 1:
            raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out!r}; e.g. 0.05")
        order = list(range(len(self.documents)))
        random.Random(seed).shuffle(order)
        cut = max(1, int(len(order) * held_out))
        pick = lambda idx: Corpus(  # noqa: E731
            [self.documents[i] for i in sorted(idx)], self.source, self.package, self.files
        )
        return pick(order[cut:]), pick(order[:cut])


def _debian_version(package: str) -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_corpus(
    root: str | Path = DEBIAN_PYTHON_DOCS,
    *,
    package: str | None = DEBIAN_PACKAGE,
    doc_words: int = 200,
    suffixes: Sequence[str] = (".txt", ".rst"),
) -> Corpus:
    """Prose paragraphs of every text file under `root`, packed into ~`doc_words`-word documents.

    Files are read in sorted order so the corpus (and its digest) is the same on every machine
    with the same package version.
    """
    base = Path(root)
    if not base.is_dir():
        hint = f" (install it: apt-get install {package})" if package else ""
        raise FileNotFoundError(f"corpus directory {base} does not exist{hint}")
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in suffixes)
    if not files:
        raise ValueError(f"no {'/'.join(suffixes)} files under {base}; point root at a text tree")
    documents: list[str] = []
    current: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for block in re.split(r"\n\s*\n", text):
            para = clean_paragraph(block)
            if para is None:
                continue
            current.append(para)
            if sum(len(p.split()) for p in current) >= doc_words:
                documents.append(" ".join(current))
                current = []
        if current:  # documents never span files
            documents.append(" ".join(current))
            current = []
    if not documents:
        raise ValueError(f"no prose paragraphs found under {base}")
    return Corpus(documents, str(base), package if base == DEBIAN_PYTHON_DOCS else None, len(files))
