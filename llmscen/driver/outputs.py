"""Writing a run's files: results.json first (everything else is made from it), then the reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmscen.metrics.results import RunResults
from llmscen.report.junit import write_junit


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
