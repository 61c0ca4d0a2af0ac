"""Writing a run's files: results.json first (everything else is made from it), then the reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmscen.metrics.results import RunResults
from llmscen.report.junit import write_junit


def scrub_service_logs(out_dir: Path, scrub: Callable[[str], str]) -> None:
    """Mask the run's secrets in the logs its services wrote (a server may print its own
    --api-key or echo a request's header); line by line, so a large log is not read whole."""
    for log in sorted(out_dir.glob("service-*.log")):
        clean = log.with_name(log.name + ".scrubbed")
        try:
            with log.open(encoding="utf-8", errors="replace", newline="") as raw, \
                    clean.open("w", encoding="utf-8", newline="") as masked:
                for line in raw:
                    masked.write(scrub(line))
            clean.replace(log)
        except OSError:   # a log that cannot be rewritten is left out rather than kept raw
            clean.unlink(missing_ok=True)
            log.unlink(missing_ok=True)


def write_outputs(results: RunResults, out_dir: Path, json_path: str | None = None,
                  junit_path: str | None = None, html_path: str | None = None,
                  summary_path: str | None = None, csv_dir: str | None = None
                  ) -> tuple[list[Path], list[str]]:
    """Write every output; returns (written, problems). A report that fails to render is
    reported, never at the cost of the others."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_file = Path(json_path) if json_path else out_dir / "results.json"
    written: list[Path] = []
    failed: list[str] = []
    writers: list[tuple[Path, Callable[[RunResults, Path], None]]] = [
        (results_file, lambda r, p: r.save(p)),
        (Path(junit_path) if junit_path else out_dir / "junit.xml", write_junit)]
    try:
        from llmscen.report.html import write_html
    except ImportError:
        pass
    else:
        writers.append((Path(html_path) if html_path else out_dir / "report.html", write_html))
    if summary_path:
        from llmscen.report.markdown import write_summary
        writers.append((Path(summary_path), write_summary))
    for path, writer in writers:
        try:
            writer(results, path)
        except Exception as exc:  # a broken reporter must not lose the run's results
            failed.append(f"could not write {path}: {type(exc).__name__}: {exc}")
        else:
            written.append(path)
    if csv_dir:
        from llmscen.report.csv_export import write_csv
        try:
            written += write_csv(results, csv_dir)
        except Exception as exc:
            failed.append(f"could not write the CSV files in {csv_dir}: "
                          f"{type(exc).__name__}: {exc}")
    return written, failed
