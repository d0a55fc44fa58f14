"""LineReader: JSON-lines framing of the control socket (PROTOCOL.md 2.1, 2.3)."""

from __future__ import annotations


from codeswarm.protocol import MAX_LINE_BYTES, Rejection, parse_command_line
from codeswarm.router.connection import LineReader


def kinds(items: list) -> list:
    return [("rejected", x.code) if isinstance(x, Rejection) else x for x in items]


def test_lines_split_on_lf():
    r = LineReader()
    assert r.feed(b'{"a":1}\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']


def test_partial_line_waits_for_its_lf():
    r = LineReader()
    assert r.feed(b'{"a"') == []
    assert r.feed(b":1}") == []
    assert r.feed(b"\n{") == [b'{"a":1}']
    assert r.feed(b"}\n") == [b"{}"]


def test_crlf_is_tolerated():
    r = LineReader()
    assert r.feed(b'{"a":1}\r\n{"b":2}\r') == [b'{"a":1}']
    assert r.feed(b"\n") == [b'{"b":2}']


def test_empty_and_blank_lines_are_ignored():
    r = LineReader()
    assert r.feed(b"\n\r\n   \n\t\n{}\n\n") == [b"{}"]


def test_only_the_last_cr_is_stripped():
    assert LineReader().feed(b"x\r\r\n") == [b"x\r"]


def test_oversize_line_is_one_rejection_and_the_next_line_parses():
    r = LineReader()
    out = []
    chunk = b"x" * 65536
    for _ in range((MAX_LINE_BYTES // len(chunk)) + 3):  # a line well over 1 MiB, in pieces
        out += r.feed(chunk)
    out += r.feed(b"yyy\n" + b'{"protocol": "codeswarm.router.v1", "command": "ping", "request_id": "r"}\n')
    assert kinds(out)[0] == ("rejected", "line_too_long")
    assert len(out) == 2
    assert out[0].request_id is None
    assert parse_command_line(out[1]).command == "ping"


def test_oversize_line_in_one_feed():
    r = LineReader()
    out = r.feed(b"x" * (MAX_LINE_BYTES + 1) + b"\n{}\n")
    assert kinds(out) == [("rejected", "line_too_long"), b"{}"]


def test_line_of_exactly_the_limit_is_accepted():
    r = LineReader()
    assert r.feed(b"x" * MAX_LINE_BYTES + b"\n") == [b"x" * MAX_LINE_BYTES]
    r = LineReader()
    assert r.feed(b"x" * MAX_LINE_BYTES) == []
    assert r.feed(b"\n") == [b"x" * MAX_LINE_BYTES]


def test_small_limit_behaves_the_same():
    r = LineReader(limit=8)
    assert kinds(r.feed(b"123456789\nok\n")) == [("rejected", "line_too_long"), b"ok"]
    assert kinds(r.feed(b"12345678")) == []
    assert kinds(r.feed(b"9")) == [("rejected", "line_too_long")]
    assert kinds(r.feed(b"0000000000000")) == []  # still the same line: no second rejection
    assert kinds(r.feed(b"\nnext\n")) == [b"next"]


def test_a_line_exactly_at_the_limit_with_crlf_split_before_the_lf():
    # Same bytes as test_crlf_is_tolerated at the limit, fed together: accepted.
    r = LineReader(limit=8)
    assert r.feed(b"12345678\r\n") == [b"12345678"]



def test_a_line_exactly_at_the_limit_with_crlf_does_not_depend_on_chunking():
    r = LineReader(limit=8)
    out = r.feed(b"12345678\r") + r.feed(b"\n")
    assert out == [b"12345678"]
