"""Failed calls as every report shows them: grouped, and each sample cut to one readable line.

A server's error body is untrusted and often a whole HTML page; reports show
one line of it — the page's title or its text without tags — never the markup.
(The HTML report still escapes what it shows: a line is text, not markup.)
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from llmscen.metrics.results import ErrorSummary, RunResults

LINE = 160           # characters of one sample line
_MARKUP = re.compile(r"<\s*(!doctype|html|head|body|title|div|p|h\d|center|pre|span|table)\b",
                     re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_HEADING = re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.I | re.S)
_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def one_line(text: str, limit: int = LINE) -> str:
    """`text` on one line of at most `limit` characters; an HTML page becomes its title
    (or its heading, or its text without tags)."""
    head, body = _split_prefix(text)
    if _MARKUP.search(body):
        found = _TITLE.search(body) or _HEADING.search(body)
        inner = found.group(1) if found else _DROP.sub(" ", body)
        body = html.unescape(_TAG.sub(" ", inner)) + " [HTML page]"
    line = _SPACE.sub(" ", f"{head}{body}").strip()
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _split_prefix(text: str) -> tuple[str, str]:
    """(`HTTP 503 Service Unavailable: `, the body) for runner messages that quote a body."""
    match = re.match(r"^(HTTP \d{3}[^:<]{0,60}:\s*)(.*)$", text, re.S)
    return (match.group(1), match.group(2)) if match else ("", text)


@dataclass(frozen=True)
class ErrorGroup:
    """Failed calls of one request sharing an error class and a status."""

    request: str
    error: str
    status: int | None
    count: int
    phases: list[str]
    first: float | None
    last: float | None
    target: str | None
    url: str | None
    samples: list[str] = field(default_factory=list)    # one line each, distinct

    @property
    def label(self) -> str:
        """`http 503`, `timeout`, `connect`."""
        return f"{self.error} {self.status}" if self.status is not None else self.error

    @property
    def when(self) -> str:
        if self.first is None or self.last is None:
            return ""
        return f"{self.first:.1f}s" if self.last - self.first < 0.05 else \
            f"{self.first:.1f}s–{self.last:.1f}s"


def error_groups(results: RunResults) -> list[ErrorGroup]:
    """Every error summary, most frequent first, with its target's URL."""
    targets = {r.name: r.target for r in results.requests}
    urls = {t.name: t.url for t in results.meta.targets}
    out = []
    for e in sorted(results.errors, key=lambda e: (-e.count, e.request, e.error)):
        target = targets.get(e.request.split(".", 1)[0]) or _only_target(results)
        out.append(ErrorGroup(
            request=e.request, error=e.error, status=e.status, count=e.count,
            phases=e.phases or _phases_of(results, e), first=e.first, last=e.last,
            target=target, url=urls.get(target) if target else None,
            samples=list(dict.fromkeys(one_line(s.message) for s in e.samples))))
    return out


def _only_target(results: RunResults) -> str | None:
    return results.meta.targets[0].name if len(results.meta.targets) == 1 else None


def _phases_of(results: RunResults, error: ErrorSummary) -> list[str]:
    """For files without phases on their errors: the phases whose scopes counted the class."""
    return list(dict.fromkeys(s.phase for s in results.scopes if s.request == error.request
                              and s.counters.errors.get(error.error)))


def summary_line(group: ErrorGroup) -> str:
    """`chat: http 503 ×12 in steady (3.0s–9.5s) at http://…/v1 — Service Unavailable`."""
    where = f" in {', '.join(group.phases)}" if group.phases else ""
    when = f" ({group.when})" if group.when else ""
    url = f" at {group.url}" if group.url else ""
    sample = f" — {group.samples[0]}" if group.samples else ""
    return f"{group.request}: {group.label} ×{group.count:,}{where}{when}{url}{sample}"
