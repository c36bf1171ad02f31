"""The webhook's JSON log lines (webhook/logs.py): one object per line, readable Spanish, every field kept."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date

from webhook.logs import LOGGER_NAME, JsonFormatter


def _record(**fields) -> logging.LogRecord:
    record = logging.LogRecord(LOGGER_NAME, logging.INFO, __file__, 0, "http_request", (), None)
    record.event, record.fields = "http_request", fields
    return record


def _line(**fields) -> dict:
    text = JsonFormatter().format(_record(**fields))
    assert "\n" not in text
    return json.loads(text)


def test_a_line_keeps_its_fields_in_order_and_spanish_text_readable():
    line = _line(request_id="r-1", job_status="processing", message="No se encontró el municipio", changed=1)
    assert list(line)[:4] == ["ts", "level", "logger", "event"] and line["event"] == "http_request"
    assert list(line)[4:] == ["request_id", "job_status", "message", "changed"]
    assert line["message"] == "No se encontró el municipio"
    text = JsonFormatter().format(_record(message="ñ"))
    assert "ñ" in text and "\\u00f1" not in text


def test_a_line_keeps_json_s_separators_which_readers_match_on():
    # Readers of the log (and test_gunicorn.py) match text such as `"logger": "robotjobs.webhook"`: a compact writer
    # (orjson's `,` and `:` without spaces) would hide every line from them.
    text = JsonFormatter().format(_record(request_id="r-1"))
    assert f'"logger": "{LOGGER_NAME}", "event": "http_request", "request_id": "r-1"' in text


def test_values_json_has_no_type_for_are_written_as_text_and_big_integers_exactly():
    run_id = uuid.uuid4()
    line = _line(flow_run_id=run_id, day=date(2026, 12, 7), error=ValueError("sin conexión"), big=2**70)
    assert line["flow_run_id"] == str(run_id) and line["day"] == "2026-12-07" and line["error"] == "sin conexión"
    assert line["big"] == 2**70
