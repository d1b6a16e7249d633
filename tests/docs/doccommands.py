"""Find the Lepton commands quoted in Markdown and check each subcommand and option against the real
CLI's ``--help``.

What counts as a command: in a fenced block with no language or a shell one (bash, sh, console, ...),
every shell segment (split at ``|``, ``&&``, ``||``, ``;``) that runs ``lepton``, ``lepton-agent``,
``lepton-bridge``, ``lepton-worker`` (also as a path into a ``bin/`` such as ``.venv/bin/lepton``,
behind env assignments and ``sudo``, ``env``, ``nice -n 5``, ``timeout 60`` ..., or as ``python -m
edge_agent|hub_bridge|cloud_worker|lepton_cli.main``) or ``bash scripts/NAME.sh``; in running text,
an inline code span that *starts* with one (after env assignments). ``journalctl -u lepton-agent``
and ``rm -rf /opt/lepton`` name no command. Comments, redirections and ``...`` are dropped.

What is checked, walking the words left to right as argparse would: an option must be one the
parser in effect lists in its ``--help`` (options that take a value skip it); a word where that
parser expects a subcommand must be one of those its ``--help`` lists, unless it is a placeholder
(upper case like ``COMMAND``, or holding ``<``, ``{`` or ``|``), which ends the check; a word given
to a parser with no positional argument is an error. Other positional words (values, ``PORT``,
``cam-1``) are not judged. Scripts: the file must exist; ``scripts/up.sh`` is ``lepton up``; a
script that hands its arguments on (``"$@"``: to pytest, to compose) takes any; otherwise an
option must be one of the script's own ``case`` patterns.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROGS = ("lepton", "lepton-agent", "lepton-bridge", "lepton-worker")
MODULES = {"edge_agent": "lepton-agent", "hub_bridge": "lepton-bridge", "cloud_worker": "lepton-worker",
           "lepton_cli.main": "lepton"}
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "shell-session", "sh-session", "zsh"}
ELLIPSIS = {"...", "…"}
_REDIRECT = re.compile(r"(?<!\S)\d*(?:>>?|<|&>)&?\s*[^\s|;&]+")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    prog: tuple[str, ...]  # ("lepton",), ("lepton", "up") for scripts/up.sh, ("script", "scripts/x.sh")
    args: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join((*self.prog, *self.args))


@dataclass(frozen=True)
class Help:
    options: dict[str, bool] = field(default_factory=dict)  # option -> takes a value
    subcommands: tuple[str, ...] = ()
    positionals: int = 0  # positional arguments that are not subcommands


# ---- Markdown -> commands ------------------------------------------------------------------
def _strip_comment(line: str) -> str:
    """Drop a shell comment: an unquoted '#' at the start of a word."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _segments(line: str) -> list[list[str]]:
    line = _REDIRECT.sub(" ", _strip_comment(line))
    try:
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = ""
        words = list(lex)
    except ValueError:  # an unbalanced quote in prose: split on blanks
        words = line.split()
    out, cur = [], []
    for w in words:
        if w and set(w) <= set("|&;()"):
            out.append(cur)
            cur = []
        else:
            cur.append(w)
    return [s for s in out + [cur] if s]


WRAPPERS = {"sudo", "exec", "env", "nice", "timeout", "nohup", "time", "command"}


def _prog(word: str) -> str | None:
    """A Lepton console script, by name or by a path into a bin/ directory (not /opt/lepton)."""
    base = os.path.basename(word)
    if base in PROGS and ("/" not in word or os.path.basename(os.path.dirname(word)) == "bin"):
        return base
    return None


def _command(words: list[str], where: str, wrapped: bool) -> Command | None:
    """The Lepton command a shell segment runs, if any (``wrapped``: behind sudo, env, nice -n 5 ...)."""
    after_wrapper = False
    for i, w in enumerate(words):
        rest = tuple(words[i + 1:])
        prog = _prog(w)
        if prog:
            return Command(where, (prog,), rest)
        base = os.path.basename(w)
        if re.fullmatch(r"python3?(\.\d+)?", base) and len(rest) >= 2 and rest[0] == "-m" and rest[1] in MODULES:
            return Command(where, (MODULES[rest[1]],), rest[2:])
        if base == "bash" and rest and rest[0].startswith("scripts/"):
            if rest[0] == "scripts/up.sh":
                return Command(where, ("lepton", "up"), rest[1:])
            return Command(where, ("script", rest[0]), rest[1:])
        if _ENV.match(w):
            continue
        if wrapped and w in WRAPPERS:
            after_wrapper = True
            continue
        if after_wrapper and (w.startswith("-") or w.isdigit()):
            continue
        return None
    return None


def _joined(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, logical line): backslash continuations joined, console prompts dropped."""
    buf, start = "", 0
    for n, raw in lines:
        line = raw[2:] if raw.startswith("$ ") else raw
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield start, buf + line
        buf = ""
    if buf:
        yield start, buf


def commands_in(text: str, name: str) -> list[Command]:
    out: list[Command] = []
    fence: str | None = None
    shell = False
    block: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if fence is None and m:
            fence, shell, block = m.group(1), m.group(2).lower() in SHELL_LANGS, []
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                if shell:
                    for start, logical in _joined(block):
                        for seg in _segments(logical):
                            c = _command(seg, f"{name}:{start}", wrapped=True)
                            if c:
                                out.append(c)
                fence = None
            else:
                block.append((n, line))
            continue
        for span in re.finditer(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", line):
            for seg in _segments(span.group(2))[:1]:
                c = _command(seg, f"{name}:{n}", wrapped=False)
                if c:
                    out.append(c)
    return out


# ---- --help -> what a parser takes -------------------------------------------------------------
def parse_help(text: str) -> Help:
    options: dict[str, bool] = {}
    subs: list[str] = []
    positionals = 0
    section = ""
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line[:-1]
            continue
        if section == "positional arguments":
            if re.match(r"^    \S", line):
                subs.append(line.split()[0])
            elif re.match(r"^  \S", line):
                positionals += 1
        m = re.match(r"^  (-\S.*?)(?:\s{2,}\S.*)?$", line)
        if m and section != "positional arguments":
            for part in m.group(1).split(", "):
                bits = part.split(None, 1)
                # A value in brackets (nargs="?") is optional: "maybe" takes the next word when it is not an option.
                options[bits[0]] = "maybe" if len(bits) > 1 and bits[1].startswith("[") else len(bits) > 1
    # A subparsers action is one positional (its metavar) whose choices are listed under it.
    return Help(options, tuple(subs), positionals - (1 if subs else 0))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}


@cache
def real_help(prog: tuple[str, ...]) -> Help | None:
    """The parser of ``prog`` (e.g. ("lepton", "keys", "init")) as its real --help shows it."""
    exe = Path(sys.executable).parent / prog[0]
    r = subprocess.run([str(exe), *prog[1:], "--help"], capture_output=True, text=True, timeout=120, env=_env(),
                       cwd=REPO)
    if r.returncode != 0 or not r.stdout.startswith(f"usage: {' '.join(prog)}"):
        return None
    return parse_help(r.stdout)


@cache
def script_help(script: str) -> Help | None:
    """A script's options: its `case` patterns; None when it hands its arguments ("$@") to another
    program (pytest, compose), which takes what it takes."""
    path = REPO / script
    if not path.is_file():
        raise FileNotFoundError(script)
    text = path.read_text()
    if '"$@"' in text:
        return None
    options = {}
    for m in re.finditer(r"^\s*((?:-[-\w]+\s*\|?\s*)+)\)", text, re.M):
        for opt in m.group(1).split("|"):
            options[opt.strip()] = False
    return Help(options, (), 1)


# ---- the check ---------------------------------------------------------------------------------
def placeholder(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_|.-]*", word)) or any(c in word for c in "<{|")


def check(cmd: Command, helps: Callable[[tuple[str, ...]], Help | None] = real_help) -> list[str]:
    """What in ``cmd`` its CLI does not have (empty: all of it exists)."""
    where = f"{cmd.where}: `{cmd}`"
    if cmd.prog[0] == "script":
        try:
            h = script_help(cmd.prog[1])
        except FileNotFoundError:
            return [f"{where}: no script {cmd.prog[1]}"]
        if h is None:
            return []
        return [f"{where}: {cmd.prog[1]} has no option {w.split('=')[0]}" for w in cmd.args
                if w.startswith("-") and w.split("=")[0] not in h.options]
    path = list(cmd.prog)
    h = helps(tuple(path))
    if h is None:
        return [f"{where}: `{' '.join(path)}` does not exist"]
    words = [w.strip("[]") for w in cmd.args if w not in ELLIPSIS and w.strip("[]")]
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w.startswith("-") and len(w) > 1:
            opt, eq, _ = w.partition("=")
            if opt not in h.options:
                return [f"{where}: `{' '.join(path)}` has no option {opt}"]
            takes = h.options[opt]
            if takes == "maybe":
                takes = i < len(words) and not words[i].startswith("-")
            if takes and not eq:
                i += 1  # its value
            continue
        if h.subcommands:
            if placeholder(w):
                return []
            if w not in h.subcommands:
                return [f"{where}: `{' '.join(path)}` has no subcommand {w!r} (it has {', '.join(h.subcommands)})"]
            path.append(w)
            h = helps(tuple(path))
            if h is None:
                return [f"{where}: `{' '.join(path)} --help` fails"]
        elif h.positionals == 0:
            return [f"{where}: `{' '.join(path)}` takes no argument {w!r}"]
    return []


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
