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


def test_sample_lines_show_ids_as_the_programs_print_them():
    """A sample `sent`/`received` line in the docs carries a whole id (32 hex digits), never a shortened one."""
    ids = [match for doc in DOCS for match in re.findall(r"\b(?:sent|received) seq=\d+ id=(\S+)", doc.read_text())]
    assert ids and all(re.fullmatch(r"[0-9a-f]{32}", found) for found in ids), ids


def test_the_chat_docs_run_the_chat_from_the_virtualenv():
    """docs/chat.md's commands call the chat where it is installed (.venv/bin), never a bare rabbitipc-chat."""
    text = (ROOT / "docs" / "chat.md").read_text()
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S))
    assert "rabbitipc-chat" in blocks
    assert not re.search(r"(^|[\s|])rabbitipc-chat\b", blocks, re.M), blocks


def test_docker_docs_lead_to_the_registry_free_path_and_the_port_variables():
    """docs/docker.md links the base images' stand-ins before any compose command, names the variable that moves a
    taken port, and lists start-dockerd.sh's settings."""
    text = (ROOT / "docs" / "docker.md").read_text()
    assert text.index("(#base-images-without-a-registry)") < text.index("docker-compose up -d")
    assert "port is\nalready allocated" in text and "RABBITIPC_AMQP_PORT=5673" in text
    engine = (ROOT / "scripts" / "start-dockerd.sh").read_text()
    for variable in sorted(set(re.findall(r"RABBITIPC_DOCKER_[A-Z]+", engine))):
        assert f"`{variable}`" in text, variable


def test_the_root_holds_no_one_file_folder_but_the_two_programs():
    """Each folder at the top of the checkout holds more than one file, sender/ and receiver/ (the design's two
    program folders) aside, and docs/layout.md names every top-level folder and script."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    folders: dict[str, int] = {}
    for path in tracked:
        if "/" in path and not path.startswith("."):
            top = path.split("/", 1)[0]
            folders[top] = folders.get(top, 0) + 1
    assert {"sender", "receiver", "k8s", "tests"} <= set(folders)
    assert [top for top, files in sorted(folders.items()) if files == 1 and top not in ("sender", "receiver")] == []
    layout = (ROOT / "docs" / "layout.md").read_text()
    scripts = [path for path in tracked if "/" not in path and path.endswith(".sh")]
    assert [name for name in [*folders, *scripts] if f"`{name}" not in layout] == []


def test_the_readme_is_a_first_screen_and_a_short_tour_linking_every_docs_page():
    """The README stays short (190 lines at most), its first screen keeps the two commands (run locally, run the
    tests), and it links every page of docs/, where the details live."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 190, len(lines)
    first_screen = "\n".join(lines[:30])
    for command in ("run-local", "run-tests"):
        assert re.search(rf"^\./{command}\.sh +#", first_screen, re.M), command
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", "\n".join(lines)))
    assert sorted(page.name for page in (ROOT / "docs").glob("*.md") if page.name not in linked) == []


def test_the_architecture_and_layout_pages_name_only_files_that_exist():
    """Every Python file docs/architecture.md and docs/layout.md name (by path, or by bare name under a folder of
    rabbitipc/) exists, so the pages follow the code when modules move."""
    package = ROOT / "rabbitipc"
    missing = []
    for page in ("architecture.md", "layout.md"):
        text = (ROOT / "docs" / page).read_text()
        for name in sorted(set(re.findall(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.py)\b", text))):
            candidates = [ROOT / name, package / name, *package.rglob(name)] if "/" not in name else \
                [ROOT / name, package / name, *(p for p in package.rglob(name.rsplit("/", 1)[1])
                                                 if p.as_posix().endswith("/" + name))]
            if not any(path.exists() for path in candidates):
                missing.append(f"{page}: {name}")
    assert missing == []


def test_the_docs_show_no_chart_but_the_one_every_bench_run_writes():
    """No chart image is kept in docs/ (one from an older run went stale); the README and docs/performance.md
    point at the chart the bench writes on every run, bench-results/throughput.svg."""
    assert sorted(p.name for p in (ROOT / "docs").iterdir() if p.suffix in (".png", ".svg", ".jpg")) == []
    assert 'out / "throughput.svg"' in (ROOT / "bench" / "__main__.py").read_text()
    for page in ("README.md", "docs/performance.md"):
        assert "bench-results/throughput.svg" in (ROOT / page).read_text(), page
