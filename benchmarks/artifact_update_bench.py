"""A progress update's cost on both sides: Prefect's `update_artifact` against relay/progress.py's PATCH.

The webhook updates each reporting job's progress artifact about once a second. Prefect's client method also emits a
`prefect.artifact.updated` event per call (through an events worker thread in the calling process, and the server's
event pipeline); relay sends the PATCH alone. This starts a real `prefect server start` (SQLite, in a temporary
folder, 127.0.0.1), creates one progress artifact and updates it `--updates` times each way, alternating, and prints
per update: the calling process's CPU, the server's CPU (read after a pause that lets its event services drain) and
the wall time.

Run:  .venv/bin/python -m benchmarks.artifact_update_bench [--updates 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

DRAIN_S = 4.0  # after each series: events still queued are processed within it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from benchmarks.common import cpu_s
    from stack.processes import prefect_env, start_prefect_server

    work = Path(tempfile.mkdtemp(prefix="artifact-bench-"))
    server, api_url = start_prefect_server(work / "prefect", log_dir=work)
    try:
        os.environ.update({**prefect_env(work / "prefect", api_url), "PREFECT_API_URL": api_url})
        import httpx
        from prefect.client.orchestration import SyncPrefectClient
        from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

        from relay.progress import _update_progress_artifact

        with SyncPrefectClient(api_url, httpx_settings={"timeout": httpx.Timeout(10.0)}) as client:
            artifact = client.create_artifact(
                ArtifactCreate(key="bench-progress", type="progress", data=0.0, description="0")
            )
            time.sleep(DRAIN_S)

            def prefects(n: int) -> None:
                client.update_artifact(artifact.id, ArtifactUpdate(data=n / 10, description=f"{n}"))

            def relays(n: int) -> None:
                _update_progress_artifact(client, artifact.id, n / 10, f"{n}")

            print(f"Prefect server {api_url} (SQLite); {args.updates} updates per series, {args.rounds} round(s)")
            print(f"{'':<40}{'client CPU':>12}{'server CPU':>12}{'wall':>10}   (per update, ms)")
            for _ in range(args.rounds):
                for name, update in (("Prefect's update_artifact (+ event)", prefects), ("relay's PATCH", relays)):
                    server_before, cpu_before, wall_before = cpu_s(server.pid), time.process_time(), time.perf_counter()
                    for n in range(args.updates):
                        update(n)
                    wall = time.perf_counter() - wall_before
                    cpu = time.process_time() - cpu_before
                    time.sleep(DRAIN_S)
                    server_cpu = cpu_s(server.pid) - server_before
                    per = 1000 / args.updates
                    print(f"{name:<40}{cpu * per:>12.2f}{server_cpu * per:>12.2f}{wall * per:>10.2f}")
    finally:
        server.stop()
    print("(server CPU includes its idle cost during the drain pause, the same for both)")
    rerun = " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"rerun: .venv/bin/python -m benchmarks.artifact_update_bench {rerun}")


if __name__ == "__main__":
    main()
