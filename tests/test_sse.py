"""The bytes-level SSE parser: same events however the stream is cut into reads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmscen.runners.sse import SSEParser, event_data

# Line text never holds a line ending; non-ASCII checks splits inside UTF-8 sequences.
line_text = st.text(alphabet=st.characters(exclude_categories=["Cs"],
                                           exclude_characters="\r\n"), max_size=20)
field_line = st.one_of(
    st.tuples(st.just("data"), line_text),
    st.tuples(st.just("comment"), line_text),
    st.tuples(st.sampled_from(["event", "id", "retry"]), line_text),
)
event = st.lists(field_line, min_size=1, max_size=5)
newline = st.sampled_from(["\n", "\r\n", "\r"])


def encode(events: list[list[tuple[str, str]]], eol: str, space: bool) -> tuple[bytes, list[bytes]]:
    """The stream's bytes and the data each event should yield."""
    out: list[str] = []
    expected: list[bytes] = []
    for lines in events:
        data = []
        for kind, text in lines:
            if kind == "comment":
                out.append(f":{text}{eol}")
            else:
                # Without the optional space, a value starting with a space keeps it.
                sep = ": " if space or text.startswith(" ") else ":"
                out.append(f"{kind}{sep}{text}{eol}")
                if kind == "data":
                    data.append(text)
        out.append(eol)
        if data:
            expected.append("\n".join(data).encode())
    return "".join(out).encode(), expected


def feed_all(parser: SSEParser, pieces: list[bytes]) -> list[bytes]:
    got: list[bytes] = []
    for piece in pieces:
        got.extend(parser.feed(piece))
    got.extend(parser.close())
    return got


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points:
        pieces.append(raw[start:p])
        start = p
    pieces.append(raw[start:])
    return pieces


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=8), newline, st.booleans(),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_gives_the_same_events(events, eol, space, cuts):
    raw, expected = encode(events, eol, space)
    assert feed_all(SSEParser(), [raw]) == expected
    assert feed_all(SSEParser(), split_at(raw, cuts)) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(event, min_size=1, max_size=5), newline)
def test_byte_by_byte(events, eol):
    raw, expected = encode(events, eol, True)
    assert feed_all(SSEParser(), [raw[i:i + 1] for i in range(len(raw))]) == expected


def test_openai_stream_with_crlf_comments_and_multiline_data():
    raw = (b": ping\r\n\r\n"
           b"data: {\"a\": 1}\r\n\r\n"
           b"event: message\r\nid: 7\r\ndata: line one\r\ndata: line two\r\n\r\n"
           b"data:[DONE]\r\n\r\n")
    assert feed_all(SSEParser(), [raw]) == [b'{"a": 1}', b"line one\nline two", b"[DONE]"]


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [b"a", b"b"]


def test_extra_blank_lines_and_empty_data():
    raw = b"\n\n\ndata: x\n\n\n\ndata\n\ndata:\n\n"
    assert feed_all(SSEParser(), [raw]) == [b"x", b"", b""]


def test_close_keeps_a_complete_unterminated_event_and_drops_a_cut_one():
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]\n") == []
    assert parser.close() == [b"[DONE]"]
    parser = SSEParser()
    assert parser.feed(b'data: {"choices": [{"de') == []
    assert parser.close() == []
    parser = SSEParser()
    assert parser.feed(b"data: a\ndata: b") == []
    assert parser.close() == []


def test_event_data_ignores_other_fields():
    assert event_data(b"event: x\nid: 1") is None
    assert event_data(b"data:  two spaces") == b" two spaces"
