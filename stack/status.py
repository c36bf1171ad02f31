"""`make status`: is the local stack of `make up` running, where is each part, and does it answer?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from domain.settings import VAR_DIR
from stack.down import is_ours
from stack.local import pids_file

STATE_DIR = VAR_DIR / "stack"
HEALTH = {"api_url": "/health", "webhook_url": "/readyz", "simulator_url": "/_sim/state", "whatsapp_url": "/healthz"}


def _answers(url: str) -> str:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError as exc:
        return f"no responde ({type(exc).__name__})"
    return "responde" if response.status_code < 400 else f"responde {response.status_code}"


def report(state_dir: Path = STATE_DIR) -> tuple[list[str], bool]:
    """Lines for people, and whether every recorded process still runs."""
    path = pids_file(state_dir)
    if not path.exists():
        return ["El entorno local no está en marcha (no hay var/stack/pids.json). Inícielo con `make up`."], False
    record = json.loads(path.read_text())
    lines, healthy = ["Entorno local (make up):"], True
    for name, pid in record.get("pids", {}).items():
        alive = is_ours(pid, record.get("cmdlines", {}).get(name, ""))
        healthy &= alive
        lines.append(f"  {name:<22} pid {pid:<8} {'en marcha' if alive else 'DETENIDO'}")
    for key, health_path in HEALTH.items():
        url = record.get(key)
        if url:
            lines.append(f"  {key.removesuffix('_url'):<22} {url:<32} {_answers(url.rstrip('/') + health_path)}")
    if record.get("ui_url"):
        lines.append(f"  Prefect UI: {record['ui_url']}")
    lines.append(f"  registros: {record.get('log_dir', '')}")
    return lines, healthy


def main() -> int:
    lines, healthy = report()
    print("\n".join(lines))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
