"""The documentation: every relative link resolves, and the product never points at tracker issues."""

from __future__ import annotations

import re

from support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]


def test_relative_links_resolve():
    """Each [text](path) link in the README and docs/ names a file or anchor that exists."""
    broken = []
    for doc in DOCS:
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and file.suffix == ".md":
                headings = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                            for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
                if anchor not in headings:
                    broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_no_issue_numbers_in_the_product():
    """Users read the README, docs, --help and bench output: none refers to a tracker issue by number."""
    files = [*DOCS, *ROOT.glob("rabbitipc/**/*.py"), *ROOT.glob("bench/**/*.py"), *ROOT.glob("*.sh")]
    hits = [f"{f.relative_to(ROOT)}: {m}" for f in files for m in re.findall(r"(?i)\bissue \d+", f.read_text())]
    assert not hits, hits
