from __future__ import annotations

import pytest

from llmscen.metrics.recorder import scrub


@pytest.mark.parametrize(("text", "secret"), [
    ('{"access_token": "abcdef123456", "user": "x"}', "abcdef123456"),
    ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
    ("key=sk-abcdefghijklmnopqrstuvwx", "sk-abcdefghijklmnopqrstuvwx"),
    ("jwt eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJ here", "eyJhbGciOiJIUzI1"),
    ("password=hunter2hunter2&x=1", "hunter2hunter2"),
])
def test_scrub_masks_secrets(text: str, secret: str) -> None:
    assert secret not in scrub(text)
    assert "***" in scrub(text)


def test_scrub_leaves_model_output_alone() -> None:
    text = 'def greet():\n    print("Jay")  # 120 tokens of output\n'
    assert scrub(text) == text
