"""Lines: a page's documents as one NDJSON buffer (cwconsumer.model.Lines)."""

from __future__ import annotations

import itertools

import pytest

from cwconsumer.model import Lines, OutBatch

DOCS = [b'{"a":1}', b'{"b":"\\n"}', b"{}", b'{"c":[1,2,3]}']


def make(docs: list[bytes]) -> Lines:
    ends = list(itertools.accumulate(len(d) + 1 for d in docs))
    return Lines(b"".join(d + b"\n" for d in docs), ends)


def test_a_sequence_of_its_documents() -> None:
    lines = make(DOCS)
    assert len(lines) == 4
    assert list(lines) == DOCS
    assert [lines[i] for i in range(4)] == DOCS
    assert lines[-1] == DOCS[-1] and lines[-4] == DOCS[0]
    for bad in (4, -5):
        with pytest.raises(IndexError):
            lines[bad]
    assert lines == DOCS and DOCS == lines and lines == make(DOCS)
    assert lines != DOCS[:3] and lines != make(DOCS[:3])
    assert lines.ndjson() == b"".join(d + b"\n" for d in DOCS)
    assert lines.nbytes == len(lines.ndjson())
    assert bool(lines) and not make([]) and make([]).ndjson() == b""


@pytest.mark.parametrize("a,b", [(a, b) for a in range(5) for b in range(5)])
def test_slices_share_the_buffer_and_keep_their_documents(a: int, b: int) -> None:
    lines = make(DOCS)
    part = lines[a:b]
    assert isinstance(part, Lines)
    assert list(part) == DOCS[a:b]
    assert part.ndjson() == b"".join(d + b"\n" for d in DOCS[a:b])
    assert part.nbytes == sum(len(d) + 1 for d in DOCS[a:b])
    # A slice of a slice, as a chunk split twice.
    assert list(part[1:]) == DOCS[a:b][1:]
    with pytest.raises(ValueError):
        lines[::2]


def test_concat_is_the_documents_in_order() -> None:
    lines = make(DOCS)
    parts = [lines[1:3], make([]), lines[:1], lines[3:], lines[0:4]]
    joined = Lines.concat(parts)
    expected = DOCS[1:3] + DOCS[:1] + DOCS[3:] + DOCS
    assert list(joined) == expected
    assert [joined[i] for i in range(len(expected))] == expected
    assert joined.ndjson() == b"".join(d + b"\n" for d in expected)
    assert list(joined[2:5]) == expected[2:5]
    assert Lines.concat([lines]) is lines


def test_out_batch_slices_and_picks_lines() -> None:
    batch = OutBatch(make(DOCS), [1, 2, 3, 4])
    assert list(batch.slice(1, 3).docs) == DOCS[1:3]
    assert batch.slice(1, 3).timestamps_ms == [2, 3]
    picked = batch.pick([3, 0])
    assert list(picked.docs) == [DOCS[3], DOCS[0]] and picked.timestamps_ms == [4, 1]
