"""Failed calls in the reports: grouped by class and status, each sample one readable line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_report_samples import build_results

from llmscen.metrics.results import ErrorSummary, RequestInfo, Sample
from llmscen.report.errors import LINE, error_groups, one_line
from llmscen.report.markdown import summary_markdown
from llmscen.report.terminal import summary

NGINX = ("HTTP 502 Bad Gateway: <html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
         "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3"
         "</center>\r\n</body>\r\n</html>\r\n")
NO_TITLE = ("HTTP 500 Internal Server Error: <!DOCTYPE html><html><body><style>p{color:red}"
            "</style><p>Something   went\nwrong &amp; we are <b>sorry</b></p></body></html>")


def test_an_html_page_becomes_its_title() -> None:
    assert one_line(NGINX) == "HTTP 502 Bad Gateway: 502 Bad Gateway [HTML page]"
    assert one_line(NO_TITLE) == ("HTTP 500 Internal Server Error: Something went wrong & we "
                                  "are sorry [HTML page]")


def test_plain_messages_keep_their_words_on_one_line() -> None:
    assert one_line("HTTP 503: {\"error\": \"overloaded\"}\n  retry") == \
        "HTTP 503: {\"error\": \"overloaded\"} retry"
    assert one_line("connection refused") == "connection refused"


@given(st.text())
def test_every_sample_fits_one_line(text: str) -> None:
    line = one_line(text)
    assert len(line) <= LINE and "\n" not in line and "\r" not in line


def test_terminal_and_markdown_show_one_line_per_error_group() -> None:
    results = build_results()
    results.requests.append(RequestInfo(name="chat", target="main"))
    results.errors = [
        ErrorSummary(request="chat", error="http", status=502, count=7, phases=["steady"],
                     first=6.25, last=11.5, samples=[Sample(message=NGINX)] * 3),
        ErrorSummary(request="chat", error="timeout", count=2, phases=["ramp", "steady"],
                     first=3.0, last=3.0, samples=[Sample(message="no answer within 30s")])]
    groups = error_groups(results)
    assert [(g.label, g.count, g.samples) for g in groups] == [
        ("http 502", 7, ["HTTP 502 Bad Gateway: 502 Bad Gateway [HTML page]"]),
        ("timeout", 2, ["no answer within 30s"])]
    text = summary(results)
    lines = text.split("errors:\n", 1)[1].splitlines()
    assert lines[0] == ("  chat: http 502 ×7 in steady (6.2s–11.5s) at "
                        "http://127.0.0.1:8000/v1?api_key=*** — HTTP 502 Bad Gateway: "
                        "502 Bad Gateway [HTML page]")
    assert lines[1].startswith("  chat: timeout ×2 in ramp, steady (3.0s) at ")
    assert "<html>" not in text and "<title>" not in summary_markdown(results)
