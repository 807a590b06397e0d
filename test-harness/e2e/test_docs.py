"""The documentation's commands, run: every fenced block marked for testing in README.md,
docs/*.md and policies/README.md is run against the CLI, and the output the block shows must
be the output the CLI prints (docs/testing.md describes the marker and the rules).

A marked block follows an HTML comment line `<!-- doctest -->`. In a `console` block, a line
starting with `$ ` is a command (a trailing `\\` continues it on the next line) and the lines
up to the next command are its output, standard output and standard error interleaved as a
terminal shows them; an `sh` block has commands only, which must print nothing. `…` in a
shown line stands for any text within that line, and a shown line that is only `…` for any
number of lines. Each command must exit 0 (a block shows a failure as `cmd; echo "exit $?"`).

The marked blocks of one file run in order in one bash session, in a fresh directory holding
copies of examples/, envoy/, policies/ and test-harness/keys/, with `agent-iam` on PATH
($AGENT_IAM_CLI, as for every test). Only what differs from run to run is normalised, in the
shown and the real output alike: a stream id (16 hex digits: the start of a decision id,
`"stream":"…"`, `stream …`), an audit event's `prev` hash, and `latency_us`.

A `console` block that runs `agent-iam` must be marked, or say why it cannot run with
`<!-- doctest: skip REASON -->` (e.g. it needs Envoy running)."""

import difflib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import harness

ROOT = harness.ROOT
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "profiles").glob("*.md")), ROOT / "policies" / "README.md"]
COPIED = ["examples", "envoy", "policies", "test-harness/keys"]
MARK = "<!-- doctest -->"
SKIP = re.compile(r"<!-- doctest: skip (?P<why>\S.*?) -->")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
END = "@@agent-iam-doctest-end"
ELLIPSIS = "…"
NORMALISE = [
    (re.compile(r"\b[0-9a-f]{16}(?=[0-9a-f]{16}\b)"), "<stream>"),      # a decision id's stream
    (re.compile(r'("stream":")[0-9a-f]{16}"'), r'\1<stream>"'),
    (re.compile(r"\bstream [0-9a-f]{16}\b"), "stream <stream>"),
    (re.compile(r'("prev":")[0-9a-f]{64}"'), r'\1<hash>"'),
    (re.compile(r'("latency_us":)\d+'), r"\1<n>"),
]


class Block:
    def __init__(self, path, line, lang, lines, marker):
        self.path, self.line, self.lang, self.lines, self.marker = path, line, lang, lines, marker

    def commands(self):
        """[(doc line, command, shown output lines)]."""
        out, i = [], 0
        while i < len(self.lines):
            text = self.lines[i]
            if self.lang == "sh":
                if text.strip() and not text.lstrip().startswith("#"):
                    out.append((self.line + 1 + i, text, []))
                i += 1
                continue
            if not text.startswith("$ "):
                raise AssertionError(f"{self.path.name}:{self.line + 1 + i}: output before any command: {text!r}")
            start, cmd = i, text[2:]
            while cmd.endswith("\\") and i + 1 < len(self.lines):
                i += 1
                cmd += "\n" + self.lines[i]
            i += 1
            shown = []
            while i < len(self.lines) and not self.lines[i].startswith("$ "):
                shown.append(self.lines[i])
                i += 1
            out.append((self.line + 1 + start, cmd, shown))
        return out


def blocks(path):
    """Every fenced block of `path` with the marker comment right before it (or None)."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            before = lines[i - 1].strip() if i > 0 else ""
            marker = "test" if before == MARK else ("skip" if SKIP.fullmatch(before) else None)
            found.append(Block(path, i + 1, m.group("lang"), lines[i + 1:j], marker))
            i = j + 1
        else:
            i += 1
    return found


def normalise(text):
    for pattern, replacement in NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def line_matches(shown, real):
    if ELLIPSIS not in shown:
        return shown == real
    return re.fullmatch(".*".join(map(re.escape, shown.split(ELLIPSIS))), real) is not None


def output_matches(shown, real):
    """`shown` lines against `real` lines; a line `…` takes any number of lines."""
    memo = {}

    def at(i, j):
        if (i, j) not in memo:
            if i == len(shown):
                memo[i, j] = j == len(real)
            elif shown[i] == ELLIPSIS:
                memo[i, j] = any(at(i + 1, k) for k in range(j, len(real) + 1))
            else:
                memo[i, j] = j < len(real) and line_matches(shown[i], real[j]) and at(i + 1, j + 1)
        return memo[i, j]

    return at(0, 0)


def run(commands, workdir):
    """Runs the commands in one bash session in `workdir`: [(exit status, output lines)]."""
    bin_dir = workdir / ".bin"
    bin_dir.mkdir()
    (bin_dir / "agent-iam").symlink_to(Path(harness.CLI).resolve())
    script = ["exec 2>&1"]
    for _, cmd, _ in commands:
        script += [cmd, f'printf "%s\\n" "{END} $?"']
    (workdir / ".doctest.sh").write_text("\n".join(script) + "\n")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", LC_ALL="C.UTF-8")
    proc = subprocess.run(["bash", "--norc", "--noprofile", ".doctest.sh"], cwd=workdir, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    parts = re.split(rf"{END} (\d+)\n", proc.stdout)
    results = [(int(parts[k + 1]), parts[k].removesuffix("\n").split("\n") if parts[k].strip("\n") else [])
               for k in range(0, len(parts) - 1, 2)]
    assert len(results) == len(commands), f"the session stopped early:\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return results


def docs_with_tests():
    return [p for p in DOCS if any(b.marker == "test" for b in blocks(p))]


@pytest.mark.parametrize("doc", docs_with_tests(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_commands_a_doc_shows_print_what_it_shows(doc, tmp_path):
    for name in COPIED:
        shutil.copytree(ROOT / name, tmp_path / name)
    commands = [c for b in blocks(doc) if b.marker == "test" for c in b.commands()]
    failures = []
    for (line, cmd, shown), (status, real) in zip(commands, run(commands, tmp_path)):
        want = normalise("\n".join(shown)).split("\n") if shown else []
        got = normalise("\n".join(real)).split("\n") if real else []
        where = f"{doc.relative_to(ROOT)}:{line}: $ {cmd}"
        if status != 0:
            failures.append(f"{where}\nexited {status}:\n" + "\n".join(real))
        elif not output_matches(want, got):
            diff = "\n".join(difflib.unified_diff(want, got, "shown", "real", lineterm=""))
            failures.append(f"{where}\n{diff}")
    assert not failures, "\n\n".join(failures)


def test_every_console_block_that_runs_the_cli_is_tested_or_says_why_not():
    untested = [f"{b.path.relative_to(ROOT)}:{b.line}" for p in DOCS for b in blocks(p)
                if b.lang == "console" and b.marker is None
                and any(line.startswith("$ ") and re.search(r"(^|[\s|;(/])agent-iam ", line) for line in b.lines)]
    assert untested == [], f"mark these blocks {MARK!r} or '<!-- doctest: skip REASON -->': {untested}"
    assert len(docs_with_tests()) >= 4


def test_the_comparison_can_fail():
    assert output_matches(["ok: …", ELLIPSIS, "exit 1"], ["ok: 5 event(s)", "a", "b", "exit 1"])
    assert not output_matches(["ok: …"], ["ok: 5", "extra"])
    assert not output_matches(["allow 200"], ["deny 403"])
    assert normalise('"stream":"0123456789abcdef","decision_id":"0123456789abcdef0000000000000001"') == \
        '"stream":"<stream>","decision_id":"<stream>0000000000000001"'
