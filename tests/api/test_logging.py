"""One log format (``api/logging_config.py``) and the access log (``api/logging_access.py``)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.logging_access import install_access_log
from api.logging_config import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    resolve_format,
    uvicorn_log_config,
)
from api.settings import Settings, load_settings
from personalization.privacy import hash_id
from tests.api.conftest import DELIVERY

VISITOR = "zz-raw-visitor-a77c01"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("vary.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_message_the_fields_and_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = _record(status=201, path="/v1/events", color_message="\x1b[1mhello\x1b[0m")
    record.exc_info = exc_info
    line = JsonFormatter().format(record)
    assert "\n" not in line  # one line, whatever the traceback
    parsed = json.loads(line)
    assert parsed["msg"] == "hello world" and parsed["level"] == "warning" and parsed["logger"] == "vary.test"
    assert parsed["status"] == 201 and parsed["path"] == "/v1/events" and "color_message" not in parsed
    assert parsed["pid"] > 0 and parsed["ts"].endswith("Z") and "RuntimeError: boom" in parsed["exc"]


def test_text_lines_are_key_value() -> None:
    line = TextFormatter().format(_record(status=200, path="/v1/entries/{entry_id:str}", note="two words"))
    assert " WARNING vary.test: hello world " in line
    assert "status=200" in line and "path=/v1/entries/{entry_id:str}" in line and 'note="two words"' in line


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert resolve_format("auto", _Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("JSON", _Tty()) == "json" and resolve_format("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="VARY_LOG_FORMAT='yaml'"):
        resolve_format("yaml")
    settings = load_settings({"VARY_LOG_FORMAT": "json", "VARY_ACCESS_LOG": "false"})
    assert settings.log_format == "json" and settings.access_log is False
    assert Settings().log_format == "auto" and Settings().access_log is True


def test_uvicorn_and_litestar_loggers_come_out_in_the_one_format() -> None:
    stream = io.StringIO()
    assert configure_logging("info", "json", stream) == "json"
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    logging.getLogger("litestar").warning("from litestar")
    logging.getLogger("vary.content").info("from vary")
    logging.getLogger("vary.content").debug("below the level")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [
        ("uvicorn.error", "Started server process [7]"), ("litestar", "from litestar"), ("vary.content", "from vary"),
    ]
    config = uvicorn_log_config("info", "json")
    assert config["formatters"]["vary"]["()"] == "api.logging_config.JsonFormatter"
    assert all(not spec["handlers"] and spec["propagate"] for spec in config["loggers"].values())


def test_the_access_log_has_the_route_template_status_and_duration_and_nothing_a_visitor_sent(
    settings: Settings, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings, print_keys=False)  # (Litestar's own logging setup replaces root handlers)
    install_access_log(app)
    access: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = access.append  # type: ignore[method-assign]
    logger = logging.getLogger("vary.access")
    monkeypatch.setattr(logger, "handlers", [collect])
    monkeypatch.setattr(logger, "level", logging.INFO)
    with TestClient(app) as client:
        assert client.get(f"/v1/entries/heroHome?visitor_id={VISITOR}&key={DELIVERY}").status_code == 200
        assert client.delete(f"/v1/visitors/{VISITOR}", headers=admin).status_code == 200
        assert client.get(f"/no/such/{VISITOR}").status_code == 404
    assert [(r.method, r.status) for r in access] == [("GET", 200), ("DELETE", 200), ("GET", 404)]  # type: ignore[attr-defined]
    paths = [r.path for r in access]  # type: ignore[attr-defined]
    assert paths[0].startswith("/v1/entries/{") and paths[1] == "/v1/visitors/{visitor_id}" and paths[2] == "-"
    assert all(isinstance(r.duration_ms, float) and r.duration_ms >= 0 for r in access)  # type: ignore[attr-defined]
    text = "".join(JsonFormatter().format(r) + TextFormatter().format(r) for r in access)
    for secret in (VISITOR, hash_id(VISITOR), DELIVERY, "visitor_id=", "key=", "?"):
        assert secret not in text, secret
