"""`make up`: the local stack for operators, left running (Prefect UI on 127.0.0.1:4200); `make down` stops it.

`make up PG=private` (`--postgres private`): the Prefect server and the domain database on a private PostgreSQL
(stack/private_postgres.py) whose folder is var/postgres, so its data survive `make down` and the next `make up`;
`make up` starts it first and `make down` stops it last. Without it, SQLite for both, as `make demo` uses.
"""

from __future__ import annotations

import argparse
import json
import sys

from sqlmodel import select

from domain.credentials import load_credentials_key
from domain.db import UnitOfWork, make_engine
from domain.models import Workspace
from domain.settings import VAR_DIR, get_settings
from sample_data.seed import seed_demo
from stack.down import stop_recorded
from stack.local import StackConfig, pids_file, start_stack, write_pids
from stack.prefect_auth import AUTH_FILE, configured_auth_string

STATE_DIR = VAR_DIR / "stack"
POSTGRES_DIR = VAR_DIR / "postgres"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", choices=["private"], help="private: a PostgreSQL of its own in var/postgres")
    args = parser.parse_args(argv)
    if pids_file(STATE_DIR).exists():
        print("a stack recorded in var/stack/pids.json is still there: stopping it first")
        stop_recorded(STATE_DIR)
    stack = start_stack(
        StackConfig(
            state_dir=STATE_DIR,
            prefect_port=4200,
            webhook_port=8000,
            simulator_port=8100,
            whatsapp_port=8200,
            ui=True,
            simulator_args=["--delay", "2"],
            private_postgres=POSTGRES_DIR if args.postgres == "private" else None,
        )
    )
    write_pids(stack, STATE_DIR)
    settings = get_settings()
    engine = make_engine(stack.database_url)
    with UnitOfWork(engine) as uow:
        if uow.session.exec(select(Workspace)).first() is None:
            demo = seed_demo(uow.session, credentials_key=load_credentials_key(settings, allow_generate=True))
            uow.commit()
            print(f"seeded a demo workspace: {demo.workspace_id}")
    print(json.dumps(stack.describe(), indent=2))
    print(f"\nPrefect UI: {stack.ui_url}   (deployments: submit-robot-job, retry-failed-items, reconcile)")
    print(login_help())
    print(stack.alerts)
    if args.postgres == "private":
        print(
            f"PostgreSQL: {stack.database_url.rsplit('/', 1)[0]}  (databases robotjobs and prefect, data in "
            f"{POSTGRES_DIR.relative_to(VAR_DIR.parent)})"
        )
        print(
            f"CLI: DATABASE_URL={stack.database_url} PREFECT_API_URL=http://127.0.0.1:4200/api "
            ".venv/bin/robotjobs workspaces"
        )
    else:
        print("CLI: PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/robotjobs workspaces")
    print("stop with: make down")
    return 0


def login_help() -> str:
    """How an operator logs in to the UI and points a shell at the server (the credential itself is not printed)."""
    if configured_auth_string():
        where, export = "PREFECT_SERVER_API_AUTH_STRING (environment or .env)", "the same value"
    else:
        where = f"{AUTH_FILE.relative_to(VAR_DIR.parent)} (generated, mode 0600)"
        export = f'"$(cat {AUTH_FILE.relative_to(VAR_DIR.parent)})"'
    return (
        f"The Prefect server asks for basic auth. UI login: paste user:password from {where}.\n"
        f"CLI and workers: export PREFECT_API_AUTH_STRING={export} "
        "(.venv/bin/robotjobs reads var/prefect-auth by itself when it talks to this machine's server)"
    )


if __name__ == "__main__":
    sys.exit(main())
