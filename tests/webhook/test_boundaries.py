"""The webhook's place in the architecture: it never imports flows/, and builds nothing at import time."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

WEBHOOK = Path(__file__).resolve().parents[2] / "webhook"


def test_webhook_never_imports_flows():
    for path in WEBHOOK.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(name == "flows" or name.startswith("flows.") for name in names), path.name


def test_gunicorn_config_binds_loopback_by_default(monkeypatch):
    monkeypatch.delenv("ROBOTJOBS_WEBHOOK_BIND", raising=False)
    config: dict = {}
    exec(compile((WEBHOOK / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), config)
    assert config["bind"].startswith("127.0.0.1:")
    assert config["wsgi_app"] == "webhook.app:create_app()" and config["preload_app"] is False


def test_a_worker_freezes_what_loading_the_app_created_then_starts_its_replayer():
    """Once the app is loaded (post_worker_init), its objects leave the collector's passes: a full collection in a
    gthread worker stops every thread, and would walk ~160,000 objects that are never garbage."""
    config: dict = {}
    exec(compile((WEBHOOK / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), config)
    started: list[bool] = []
    inbox = SimpleNamespace(start=lambda: started.append(gc.get_freeze_count() > 0))
    worker = SimpleNamespace(wsgi=SimpleNamespace(extensions={"robotjobs": SimpleNamespace(inbox=inbox)}))
    gc.unfreeze()
    try:
        config["post_worker_init"](worker)
        assert started == [True]  # frozen before the replayer's thread starts
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_loading_the_app_configures_the_orm_before_any_request(tmp_path):
    """In a fresh process (a gunicorn worker): once the app is built, the ORM's mappers are configured, so a worker's
    first finished job or batch report does not configure them in the middle of traffic."""
    code = (
        "from sqlalchemy import inspect\n"
        "from domain.models import RobotJob\n"
        "from domain.settings import get_settings\n"
        "from webhook import create_app\n"
        f"settings = get_settings(database_url='sqlite:///{tmp_path / 'app.db'}', webhook_spool_dir='{tmp_path}')\n"
        "assert not inspect(RobotJob).configured\n"
        "create_app(settings, replay_in_background=False)\n"
        "print('configured' if inspect(RobotJob).configured else 'not configured')\n"
    )
    root = WEBHOOK.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "configured"
