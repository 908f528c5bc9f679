"""server/evaluation/http_load.py: the load check's summary and its BENCHMARKS.md section."""
from __future__ import annotations

from tuneprint.server.evaluation.http_load import LoadConfig, Tally, multipart, summarise, write_results

INFO = {"songs": 3, "hours": 0.1, "backend": "faiss", "model_id": "sha256:x"}


def test_summary_counts_requests_errors_and_right_answers():
    tally = Tally()
    tally.ok(0.5, True)
    tally.ok(0.7, False)
    tally.error("HTTP 503")
    r = summarise(tally, 2.0)
    assert (r["requests"], r["ok"], r["errors"], r["requests_per_s"]) == (3, 2, 1, 1.5)
    assert r["error_kinds"] == {"HTTP 503": 1} and r["identified_right"] == 0.5
    assert r["p50_ms"] == 600.0 and r["max_ms"] == 700.0


def test_nothing_answered_gives_no_percentiles():
    r = summarise(Tally(), 1.0)
    assert r["p50_ms"] is None and r["identified_right"] is None


def test_results_section_is_replaced_not_repeated(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    r = summarise(Tally(), 1.0)
    write_results(out, r, LoadConfig(clients=2, seconds=5), INFO, None)
    write_results(out, r, LoadConfig(clients=3, seconds=5), INFO, "http://127.0.0.1:9/")
    text = out.read_text()
    assert text.count("## HTTP service under load") == 1 and "kept" in text
    assert "| 3 | 1 | 0 |" in text and "the server at http://127.0.0.1:9/" in text


def test_multipart_body_holds_the_clip():
    body, content_type = multipart(b"RIFFdata")
    boundary = content_type.split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and b"RIFFdata" in body and body.endswith(f"--{boundary}--\r\n".encode())
