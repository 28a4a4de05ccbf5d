"""Data files as people have them: what spreadsheets and other tools write is read; what cannot be used is refused
with file:line and the fix, or skipped on request; never a traceback (quic_edge.data.read_examples)."""

from __future__ import annotations

import json

import pytest

from quic_edge.data import DataError, Example, read_examples, read_labels

LABELS = ["neg", "pos"]
EXPECTED = [Example("good, really", "pos"), Example('he said "no"\nand left', "neg"), Example("café ☕", "pos")]
CSV_ROWS = 'text,label\r\n"good, really",pos\r\n"he said ""no""\nand left",neg\r\ncafé ☕,pos\r\n'


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("excel-utf8-bom.csv", b"\xef\xbb\xbf" + CSV_ROWS.encode()),  # Excel's "CSV UTF-8"
        ("plain.csv", CSV_ROWS.replace("\r\n", "\n").encode()),
        ("utf16.csv", CSV_ROWS.encode("utf-16")),  # "Unicode text" exports carry a byte-order mark
        ("semicolons.csv", CSV_ROWS.replace(",pos", ";pos").replace(",neg", ";neg").replace("text,label", "text;label")
         .replace('"good, really"', '"good, really"').encode()),
        ("tabs.tsv", CSV_ROWS.replace(",pos", "\tpos").replace(",neg", "\tneg").replace("text,label", "text\tlabel").encode()),
        ("blank-lines.csv", ("\n\n" + CSV_ROWS.replace("\r\n", "\n\n")).encode()),
        ("columns.csv", 'ID,Label, Text ,Notes\n1,pos,"good, really",\n2,neg,"he said ""no""\nand left",x\n3,pos,café ☕,\n'
         .encode()),
        ("rows.jsonl", b"\xef\xbb\xbf" + "\n".join(json.dumps({"text": e.text, "label": e.label, "id": i})
                                                   for i, e in enumerate(EXPECTED)).encode() + b"\n\n"),
        ("rows.json", json.dumps([{"text": e.text, "label": e.label} for e in EXPECTED], indent=2).encode()),
    ],
)
def test_files_as_tools_write_them_are_read(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert read_examples(path, LABELS) == EXPECTED


def test_a_windows_encoded_file_is_read_when_its_encoding_is_given(tmp_path):
    path = tmp_path / "windows.csv"
    path.write_bytes(CSV_ROWS.replace(" ☕", "").encode("cp1252"))
    with pytest.raises(DataError, match=r"windows.csv:5: not utf-8 text \(byte 0xe9\).*--encoding cp1252"):
        read_examples(path, LABELS)
    assert read_examples(path, LABELS, encoding="cp1252")[2] == Example("café", "pos")


BAD = "text,label\nfine,pos\n,pos\nno label,\nspare,maybe\n\"a,b\",pos,extra\nlast,neg\n"


def test_bad_rows_refuse_the_file_with_every_line_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD)
    with pytest.raises(DataError) as caught:
        read_examples(path, LABELS)
    message = str(caught.value)
    for line, what in ((3, "empty or missing text"), (4, "missing label"), (5, "label 'maybe' is not one of"),
                       (6, "3 columns, the header has 2")):
        assert f"bad.csv:{line}: {what}" in message
    assert "--skip-bad-rows" in message


def test_skip_bad_rows_keeps_the_valid_ones_and_lists_the_others(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD)
    skipped: list[str] = []
    assert read_examples(path, LABELS, skip_bad_rows=True, skipped=skipped) == [Example("fine", "pos"),
                                                                                 Example("last", "neg")]
    assert [s.split(": ")[0] for s in skipped] == [f"{path}:{n}" for n in (3, 4, 5, 6)]


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("missing.csv", "words,label\nhi,pos\n", r"missing.csv:1: the header must name the columns text and label"),
        ("twice.csv", "text,text,label\nhi,ho,pos\n", "once each"),
        ("quote.csv", 'text,label\n"open quote,pos\n', r"quote.csv:\d+: "),
        ("binary.csv", "text,label\nhi\x00,pos\n", "binary file"),
        ("bad.json", '{"text": "not a list"}', "must hold a list"),
        ("numbers.jsonl", '{"text": 5, "label": "pos"}\n["a", "b"]\n', r"numbers.jsonl:1: empty or missing text.*"
         r"numbers.jsonl:2: each line must be an object"),
        ("nothing.jsonl", "\n \n", "no usable examples"),
    ],
)
def test_unusable_files_are_refused_with_the_fix(tmp_path, name, data, match):
    path = tmp_path / name
    path.write_text(data)
    with pytest.raises(DataError, match=match):
        read_examples(path, LABELS)


def test_label_files_one_per_line_or_json(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfread\r\nlater\r\n\r\nskip\r\n")
    (tmp_path / "b.json").write_text('["read", "later", "skip"]')
    assert read_labels(tmp_path / "a.txt") == read_labels(tmp_path / "b.json") == ["read", "later", "skip"]
    (tmp_path / "c.txt").write_text("read\nread\n")
    with pytest.raises(DataError, match="listed twice"):
        read_labels(tmp_path / "c.txt")
