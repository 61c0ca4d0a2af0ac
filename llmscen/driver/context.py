"""What a report says about where a run ran: the scenario file as written (secrets masked),
the client machine, and what each target's server says it is.

The scenario file is masked as plans are: a string under a secret-looking key
(`api_key`, `Authorization`, `password`, ...) is replaced by `**********`,
unless it only refers to a variable with no default (`${OPENAI_API_KEY}`) or
is a template (`{{ captured.token }}`): those hold no secret themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import re
from pathlib import Path
from typing import Any

from llmscen.engine.protocol import describer
from llmscen.metrics.results import ClientInfo
from llmscen.spec.secrets import MASK, is_secret_name

log = logging.getLogger(__name__)
MAX_SOURCE = 200_000        # characters of the scenario file kept in results
SERVER_INFO_TIMEOUT_S = 3.0


def client_info() -> ClientInfo:
    return ClientInfo(host=platform.node(), os=platform.platform(terse=False),
                      python=f"{platform.python_implementation()} {platform.python_version()}",
                      cpu=_cpu_model(), cores=os.cpu_count(), memory_gb=_memory_gb())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def scenario_source(path: str) -> str | None:
    """The file at `path` as written, with secret values masked; None if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) > MAX_SOURCE:
        text = text[:MAX_SOURCE] + "\n# … (cut)\n"
    return mask_source(text)


def mask_source(text: str) -> str:
    """YAML `text` with each secret string value replaced where it is written; everything
    else (comments, layout, quotes) is kept. Text that does not parse is masked line by line."""
    from ruamel.yaml import YAML

    try:
        doc = YAML().load(text)
    except Exception:   # any parse problem: fall back to the line rule
        return _mask_lines(text)
    lines = text.splitlines(keepends=True)
    spans: list[tuple[int, int, int]] = []     # (line, start column, end column)
    _find(doc, False, lines, spans)
    for line, start, end in sorted(spans, reverse=True):
        row = lines[line]
        lines[line] = row[:start] + f"\"{MASK}\"" + row[end:]   # still valid YAML
    return "".join(lines)


# Templates and variables without a default hold no secret; what is left must be empty
# or an auth scheme word.
_HOLDERS = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-)?\}|\{\{.*?\}\}|\{%.*?%\}", re.S)
_SCHEME = re.compile(r"^\s*(Bearer|Basic|Token|Bot)?\s*$", re.I)
NOT_SECRET_KEYS = frozenset({"capture"})   # where to take a value from, never the value


def _secret(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    return not _SCHEME.match(_HOLDERS.sub("", value))


def _find(node: Any, secret: bool, lines: list[str], spans: list[tuple[int, int, int]]) -> None:
    """Collect the written spans of the secret scalars under `node`."""
    if isinstance(node, dict):
        items = [(key, node[key], _position(node, key)) for key in node]
    elif isinstance(node, list):
        items = [(None, value, _position(node, i)) for i, value in enumerate(node)]
    else:
        return
    flow = bool(getattr(getattr(node, "fa", None), "flow_style", lambda: False)())
    for key, value, where in items:
        if key is not None and str(key) in NOT_SECRET_KEYS:
            continue
        under = secret or (key is not None and is_secret_name(str(key)))
        if isinstance(value, (dict, list)):
            _find(value, under, lines, spans)
        elif under and _secret(value) and where is not None and where[0] < len(lines):
            end = _scalar_end(lines[where[0]], where[1], flow)
            if end > where[1]:
                spans.append((where[0], where[1], end))


def _position(node: Any, key: Any) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        pos = lc.value(key) if isinstance(node, dict) else lc.item(key)
    except (KeyError, IndexError, TypeError):
        return None
    return (int(pos[0]), int(pos[1])) if pos else None


def _scalar_end(line: str, start: int, flow: bool) -> int:
    """Where the scalar written at `start` of `line` ends (block scalars: nothing)."""
    if start >= len(line):
        return start
    quote = line[start]
    if quote in "\"'":
        i = start + 1
        while i < len(line):
            if quote == '"' and line[i] == "\\":
                i += 2
                continue
            if line[i] == quote:
                if quote == "'" and line[i + 1:i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return start          # a quoted scalar over several lines: leave it to the line rule
    if quote in "|>":
        return start
    stops = ",}]" if flow else ""
    i = start
    while i < len(line) and line[i] not in "\r\n" and line[i] not in stops and \
            not (line[i] == "#" and i > start and line[i - 1] in " \t"):
        i += 1
    return start + len(line[start:i].rstrip())


_LINE = re.compile(r"^(\s*-?\s*[\"']?([\w.-]+)[\"']?\s*:\s*)(\S.*)$")


def _mask_lines(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        match = _LINE.match(line.rstrip("\n"))
        if match and is_secret_name(match.group(2)) and _secret(match.group(3)) \
                and not match.group(3).lstrip().startswith(("{", "[", "#")):
            line = match.group(1) + MASK + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    return "".join(lines)


def target_model(target: Any) -> str | None:
    """The model a target's options name (`model:` of openai, vllm, triton), if any."""
    model = getattr(getattr(target, "options", None), "model", None)
    return model if isinstance(model, str) and model else None


async def server_info(runner: Any, target: str) -> dict[str, str]:
    """What a runner's server says it is (`server_info()`, optional in the plugin contract:
    `engine.protocol.Describing`); {} when the plugin cannot tell, or the server does not
    answer in time."""
    describing = describer(runner)
    if describing is None:
        return {}
    try:
        info = await asyncio.wait_for(describing.server_info(), SERVER_INFO_TIMEOUT_S)
    except Exception as exc:   # best effort: the report says less, the run goes on
        log.info("target %r: could not read the server's identity: %s", target, exc)
        return {}
    return {str(k): str(v) for k, v in (info or {}).items() if v not in (None, "")}
