"""The one atomic-write mechanism and the JSONL readers every layer uses."""

import json

import pytest

from speechbraid.errors import InputError
from speechbraid.files import atomic_open, atomic_path, iter_jsonl, read_append_log, write_jsonl


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_open(target) as handle:
        handle.write("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    with atomic_path(tmp_path / "a.wav", suffix=".wav") as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == tmp_path  # writers that pick a format by extension
        tmp.write_bytes(b"x")
    assert (tmp_path / "a.wav").read_bytes() == b"x"


def test_jsonl_lines_keep_their_numbers_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, [{"a": 1}, {"a": 2}]) == 2
    path.write_text(path.read_text() + "\n{oops\n")
    rows = iter_jsonl(path)
    assert next(rows) == (1, {"a": 1}) and next(rows) == (2, {"a": 2})
    with pytest.raises(InputError, match=r"rows\.jsonl:4.*not a JSON line"):
        next(rows)
    with pytest.raises(InputError, match="not found"):
        list(iter_jsonl(tmp_path / "missing.jsonl"))


def test_an_append_log_loses_only_its_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    assert read_append_log(log) == []
    log.write_text(json.dumps({"id": "a"}) + "\n" + json.dumps({"id": "b"}) + "\n" + '{"id": "c', encoding="utf-8")
    assert [row["id"] for _, row in read_append_log(log)] == ["a", "b"]
    assert log.read_text().endswith('"b"}\n')  # truncated at the line end: appending goes on cleanly
    log.write_text(log.read_text() + '{"id": "c"\n')  # a whole line that is not JSON, but the last: torn
    assert len(read_append_log(log)) == 2 and log.read_text().endswith('"b"}\n')
    log.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"log\.jsonl:2.*corrupt"):
        read_append_log(log)
