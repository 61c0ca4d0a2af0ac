"""Data files are read within bounds, and their problems name the file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmscen.compile import data
from llmscen.compile.data import DataFileError, read_rows


def test_rows_of_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("q,a\n1,2\n3,4\n")
    (tmp_path / "b.jsonl").write_text('{"q": 1}\n\n{"q": 2, "r": [1]}\n')
    assert read_rows(tmp_path / "a.csv", "csv") == [{"q": "1", "a": "2"}, {"q": "3", "a": "4"}]
    assert read_rows(tmp_path / "b.jsonl", "jsonl") == [{"q": 1}, {"q": 2, "r": [1]}]


def test_a_quoted_csv_field_keeps_its_commas_and_line_breaks(tmp_path: Path) -> None:
    """As docs/data.md says: CSV as Python's csv module reads it."""
    (tmp_path / "q.csv").write_text('prompt,n\n"Say hello,\nthen stop.",1\nnext,2\n')
    assert read_rows(tmp_path / "q.csv", "csv") == [
        {"prompt": "Say hello,\nthen stop.", "n": "1"}, {"prompt": "next", "n": "2"}]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("wide.csv", "q\n" + "x" * 200_000 + "\n", "wide.csv:2: invalid CSV: field larger than "
                                               "field limit"),
    ("extra.csv", "q\n1,2\n", "extra.csv:2: more fields than the header has"),
    ("bad.jsonl", '{"q": 1}\n{"q": \n', "bad.jsonl:2: invalid JSON"),
    ("deep.jsonl", "[" * 2000 + "]" * 2000 + "\n", "deep.jsonl:1: invalid JSON"),
    ("list.jsonl", "[1]\n", "list.jsonl:1: each line must be a JSON object"),
    ("empty.csv", "q\n", "data file empty.csv has no rows"),
    ("latin1.csv", b"q\n\xe9\n", "cannot read data file latin1.csv: it is not UTF-8 text"),
])
def test_bad_files_name_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                 content: str | bytes, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataFileError) as info:
        read_rows(path, "jsonl" if name.endswith(".jsonl") else "csv")
    assert message in str(info.value)


def test_reading_is_bounded_whatever_the_file_claims(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "MAX_DATA_BYTES", 100)
    (tmp_path / "ok.jsonl").write_text('{"q": 1}\n' * 10)   # 90 bytes
    assert len(read_rows(tmp_path / "ok.jsonl", "jsonl")) == 10
    (tmp_path / "big.jsonl").write_text('{"q": 1}\n' * 12)
    with pytest.raises(DataFileError, match=r"big.jsonl: it is 108 bytes, past the limit of "
                                            "100 bytes"):
        read_rows(tmp_path / "big.jsonl", "jsonl")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "rows.jsonl")   # no writer: a plain open() would wait for ever
    with pytest.raises(DataFileError, match=r"rows\.jsonl: it is a named pipe"):
        read_rows(tmp_path / "rows.jsonl", "jsonl")
