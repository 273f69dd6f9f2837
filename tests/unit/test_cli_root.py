import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from smsmenu.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert "0.1.0" in result.stdout


def test_unknown_command_is_one_line_and_non_zero() -> None:
    result = run("no-such-command")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_log_lines_and_json_times_are_in_the_timezone_setting() -> None:
    import io
    import json
    import logging
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from smsmenu.cli import to_jsonable
    from smsmenu.cli.logs import configure_logging

    shanghai = ZoneInfo("Asia/Shanghai")
    instant = datetime(2026, 11, 10, 2, 0, 5, 250000, tzinfo=UTC)
    assert to_jsonable({"at": instant}, shanghai) == {"at": "2026-11-10T10:00:05.250000+08:00"}
    record = logging.LogRecord("smsmenu.x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = instant.timestamp()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for as_json in (False, True):
            stream = io.StringIO()
            configure_logging("INFO", as_json, shanghai, stream=stream)
            root.handlers[0].handle(record)
            line = stream.getvalue().strip()
            stamp = json.loads(line)["ts"] if as_json else line.split()[0]
            assert stamp == "2026-11-10T10:00:05.250+08:00"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
