"""Issue #19 row 11: every example command of the README, docs/*.md and the `--help` texts runs as written.

Each `mshare-hw ...` command of a bash/sh/console (or untagged) fenced block, and each backquoted one in a
`--help` text, runs in-process through `main` in a fresh directory laid out like the checkout (configs/,
and every shipped file the command names), and must exit 0. The commands that need an external program
or a long run are in SKIPPED, each with its reason; a SKIPPED entry that matches no command fails.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from mshare_hw.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "console"}
FULL_SWEEP = "the whole flush-strategies grid (108 runs): well over 20 s on 2 cores"

# (doc file, start of the command as its words joined by single spaces) -> why it does not run here
SKIPPED = {
    ("calibration.md", "mshare-hw calibrate -o host.toml"): "calibrate: timing probes on the host, minutes",
    ("calibration.md", "mshare-hw uarch show host.toml"): "reads host.toml, which calibrate writes",
    ("calibration.md", "mshare-hw run configs/experiments/flush_strategies.toml --set uarch=host.toml"): (
        "reads host.toml, which calibrate writes; and " + FULL_SWEEP
    ),
    ("calibration.md", "mshare-hw calibrate --check host.toml"): "calibrate: timing probes on the host",
    ("calibration.md", "mshare-hw calibrate --compare a.toml b.toml"): "reads two profiles calibrate wrote",
    ("coherence.md", "mshare-hw run configs/experiments/flush_strategies.toml"): FULL_SWEEP,
    ("scale.md", "mshare-hw sweep configs/experiments/flush_strategies.toml -o fs.h5"): FULL_SWEEP + ", on Dask",
    ("scale.md", "mshare-hw sweep configs/experiments/flush_strategies.toml --shard"): "a SLURM job array's task",
    ("scale.md", "mshare-hw merge flush_strategies.h5 parts/part"): "merges the SLURM job array's outputs",
    ("tlb_reach.md", "mshare-hw run -q configs/experiments/tlb_reach.toml"): "1,188 runs, about a minute",
    ("traces.md", "mshare-hw trace capture"): "runs a program under valgrind",
    ("traces.md", "mshare-hw run cap/workload.toml"): "reads the manifest trace capture writes",
}


def _commands(words: list[str]) -> list[list[str]]:
    """The `mshare-hw` commands of one shell line (`a && b` is two)."""
    parts, current = [], []
    for word in [*words, "&&"]:
        if word in ("&&", ";", "||"):
            parts.append(current)
            current = []
        else:
            current.append(word)
    return [p for p in parts if p and p[0] == "mshare-hw"]


def documented_commands() -> list[tuple[str, int, list[str]]]:
    """(doc file, line, words) of every `mshare-hw` command in the docs' shell blocks."""
    found = []
    for doc in DOCS:
        fence, pending, start = None, "", 0
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            text = line.strip()
            if text.startswith("```"):
                fence = text[3:].strip() if fence is None else None
                continue
            if fence not in SHELL_FENCES:
                continue
            if not pending:
                start = number
            text = text.removeprefix("$ ")
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            text, pending = pending + text, ""
            if re.search(r"(^|&&|;)\s*mshare-hw\b", text):
                found += [(doc.name, start, words) for words in _commands(shlex.split(text, comments=True))]
    return found


def _help_texts(parser, out):
    out.append((parser.prog, parser.format_help()))
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict):
            for sub in action.choices.values():
                _help_texts(sub, out)
    return out


def help_examples() -> list[tuple[str, list[list[str]]]]:
    """(prog, its commands in order) for every `--help` text with backquoted `mshare-hw` commands that are
    examples, not synopses (a synopsis has a placeholder such as OUT or RESULTS.h5)."""
    found = []
    for prog, text in _help_texts(build_parser(), []):
        quoted = re.findall(r"`(mshare-hw [^`]*)`", " ".join(text.split()))
        examples = [shlex.split(q) for q in quoted if not re.search(r"\b[A-Z]{2,}\b", q)]
        if examples:
            found.append((prog, examples))
    return found


def _skipped_by(key: tuple[str, str], doc: str, words: list[str]) -> bool:
    return key[0] == doc and " ".join(words).startswith(key[1])


def _skip_reason(doc: str, words: list[str]) -> str | None:
    return next((why for key, why in SKIPPED.items() if _skipped_by(key, doc, words)), None)


def _in_fresh_checkout(tmp_path: Path, monkeypatch, words: list[str]) -> None:
    """tmp_path as the checkout a reader runs from: configs/ and every shipped file the command names."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    for word in words:
        shipped = ROOT / word
        if word.startswith("results/") and shipped.is_file():
            (tmp_path / word).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(shipped, tmp_path / word)
    monkeypatch.chdir(tmp_path)


DOCUMENTED = documented_commands()
HELP = help_examples()


def test_every_skipped_command_is_still_documented_and_help_has_examples():
    assert DOCUMENTED and HELP
    unused = [key for key in SKIPPED if not any(_skipped_by(key, doc, words) for doc, _, words in DOCUMENTED)]
    assert not unused, f"SKIPPED entries that match no documented command: {unused}"


@pytest.mark.parametrize(
    ("doc", "words"), [(d, w) for d, _, w in DOCUMENTED], ids=[f"{d}:{n}" for d, n, _ in DOCUMENTED]
)
def test_documented_command_runs(doc, words, tmp_path, monkeypatch, capsys):
    why = _skip_reason(doc, words)
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as e:
        pytest.fail(f"{doc}: {shlex.join(words)!r} does not parse ({e})")
    if why:
        pytest.skip(why)
    _in_fresh_checkout(tmp_path, monkeypatch, words)
    code = main(words[1:])
    assert code == 0, f"{doc}: {shlex.join(words)!r} exited {code}: {capsys.readouterr().err}"


@pytest.mark.parametrize(("prog", "examples"), HELP, ids=[prog for prog, _ in HELP])
def test_help_examples_run_in_order(prog, examples, tmp_path, monkeypatch, capsys):
    _in_fresh_checkout(tmp_path, monkeypatch, [])
    for words in examples:
        code = main(words[1:])
        assert code == 0, f"{prog} --help: {shlex.join(words)!r} exited {code}: {capsys.readouterr().err}"


def test_help_texts_render_their_percent_signs():
    assert not [prog for prog, text in _help_texts(build_parser(), []) if "option_strings" in text]
