"""The commands the READMEs show are real: every ``python -m pipeline.<stage> ...`` composes with
its overrides (each job of a ``-m`` sweep too), every ``make`` target exists, and every
benchmark script and option exists. ``make demo`` and the stage tests run them for real."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from pipeline.config import compose

REPO = Path(__file__).resolve().parent.parent
READMES = [REPO / "README.md", REPO / "data" / "README.md"]
STAGES = {"preprocess", "train", "evaluate", "predict", "synthetic"}
#: Overrides that need a plugin this environment does not install (documented as optional).
NEEDS_PLUGIN = ("hydra/launcher=",)
#: Group options a README tells users to create first (it shows the file's text).
USER_CONFIGS = ("data=adni",)

SHELL_FENCES = ("```bash", "```sh", "```console")
INLINE = re.compile(
    r"`((?:\.venv/bin/)?python -m pipeline\.[^`]+|make [a-z-]+|(?:\.venv/bin/)?pip install [^`]+)`"
)


def _shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced shell code blocks."""
    blocks, body, inside = [], [], False
    for line in text.splitlines():
        fence = line.strip()
        if not inside and fence in SHELL_FENCES:
            inside, body = True, []
        elif inside and fence == "```":
            inside = False
            blocks.append("\n".join(body))
        elif inside:
            body.append(line)
    return blocks


def _fenced_commands(text: str) -> list[str]:
    commands = []
    for block in _shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def _inline_commands(text: str) -> list[str]:
    """Inline ``python -m pipeline.x key=value`` spans (a bare module name is a name, not a
    command), ``make`` targets and ``pip install`` commands."""
    spans = (" ".join(m.split()) for m in INLINE.findall(text.replace("\n", " ")))
    return [s for s in spans if not _is_stage(s) or ("=" in s and "<stage>" not in s)]


def _is_stage(command: str) -> bool:
    return command.startswith(("python -m pipeline.", ".venv/bin/python -m pipeline."))


def readme_commands() -> list[tuple[str, str]]:
    """``(readme name, command)`` for each shell command the READMEs show."""
    found: list[tuple[str, str]] = []
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        name = str(readme.relative_to(REPO))
        for command in _fenced_commands(text) + _inline_commands(text):
            if (name, command) not in found and not any(u in command for u in USER_CONFIGS):
                found.append((name, command))
    return found


COMMANDS = readme_commands()
STAGE_COMMANDS = [c for c in COMMANDS if re.search(r"-m pipeline\.", c[1])]


def stage_and_overrides(command: str) -> tuple[str, list[str], bool]:
    """The entry point, its overrides and whether it is a multirun, from a shell command."""
    words = shlex.split(command)
    module = next(i for i, w in enumerate(words) if w.startswith("pipeline."))
    stage = words[module].removeprefix("pipeline.")
    args = words[module + 1 :]
    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if not a.startswith("-") and not a.startswith(NEEDS_PLUGIN)]
    return stage, overrides, multirun


def jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """One override list per job a (multi)run would start."""
    if not multirun:
        return [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def test_the_readmes_show_commands() -> None:
    stages = {stage_and_overrides(c)[0] for _, c in STAGE_COMMANDS}
    assert stages == STAGES, f"README commands cover {sorted(stages)}"
    assert ("README.md", "make demo") in COMMANDS
    assert ("README.md", "make test") in COMMANDS


@pytest.mark.parametrize(("readme", "command"), STAGE_COMMANDS)
def test_stage_command_composes(readme: str, command: str) -> None:
    stage, overrides, multirun = stage_and_overrides(command)
    assert stage in STAGES, f"{readme}: unknown entry point in {command!r}"
    for job in jobs(overrides, multirun):
        cfg = compose(stage, job, return_hydra_config=True)
        body = OmegaConf.create({k: v for k, v in cfg.items() if k != "hydra"})
        # Every value resolves; required values (???) the command leaves out fail here.
        OmegaConf.to_container(body, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize(("readme", "command"), [c for c in COMMANDS if c[1].startswith("make ")])
def test_make_target_exists(readme: str, command: str) -> None:
    target = command.split()[1]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{readme}: no make {target}"


@pytest.mark.parametrize(("readme", "command"), [c for c in COMMANDS if "benchmarks/" in c[1]])
def test_benchmark_command_exists(readme: str, command: str) -> None:
    words = shlex.split(command)
    script = REPO / next(w for w in words if w.startswith("benchmarks/"))
    assert script.is_file(), f"{readme}: {script.name} does not exist"
    source = script.read_text(encoding="utf-8")
    for option in (w.split("=", 1)[0] for w in words if w.startswith("--")):
        assert f'"{option}"' in source, f"{readme}: {script.name} has no option {option}"


@pytest.mark.parametrize(("readme", "command"), [c for c in COMMANDS if "pip install" in c[1]])
def test_pip_extras_exist(readme: str, command: str) -> None:
    extras = re.findall(r"\.\[([a-z,]+)\]", command)
    assert extras, f"{readme}: {command!r} installs no extra of this project"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["optional-dependencies"]
    for name in ",".join(extras).split(","):
        assert name in declared, f"{readme}: pyproject.toml has no extra {name!r}"
