"""The raw-SQL floor of a per-order callback: the least SQL with the same meaning, straight from psycopg (or sqlite3).

Per callback, one transaction on the sender's own connection:
1. auth lookup: the item's job, workspace and secret hash (checked in constant time, as the webhook does);
2. job lock: `SELECT ... FOR UPDATE` of the job row (SQLite: `BEGIN IMMEDIATE`);
3. guarded item update: the portal-truth transition (pending, or an error closed by robotjobs) with the state before;
4. counters: success/error deltas from that state;
5. order tracking + carrier, unless another item already shipped the order, with the old values and the contact
   (the event payloads' context);
6. the three outbox rows (field.changed × 2, robot.coord.completed) in one multi-row INSERT;
7. completion check: the guarded `processing → completed|failed` UPDATE (and robot.batch.completed when it wins);
8. commit.
No ORM, no Flask, no HTTP: what the database itself costs. `run_floor` drives it from `senders` connections.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.engine import make_url

AUTH = (
    "SELECT i.job_id, j.workspace_id, j.callback_secret_hash FROM robot_job_items i "
    "JOIN robot_jobs j ON j.id = i.job_id WHERE i.id = %s"
)
LOCK_PG = "SELECT status FROM robot_jobs WHERE id = %s FOR UPDATE"
ITEM_PG = (
    "UPDATE robot_job_items i SET status = %s, tracking_number = %s, error_type = NULL, error_message = NULL, "
    "resolved_by = 'robot', completed_at = %s, updated_at = %s "
    "FROM (SELECT id, status FROM robot_job_items WHERE id = %s) b "
    "WHERE i.id = b.id AND (i.status = 'pending' OR (i.status = 'error' AND i.resolved_by = 'robotjobs')) "
    "RETURNING i.order_id, b.status"
)
COUNTERS = (
    "UPDATE robot_jobs SET success_count = success_count + %s, error_count = error_count + %s, updated_at = %s "
    "WHERE id = %s"
)
ORDER_PG = (
    "WITH old AS (SELECT id, tracking_number, carrier FROM orders WHERE id = %s FOR UPDATE), "
    "o AS (UPDATE orders SET tracking_number = %s, carrier = 'COORDINADORA', updated_at = %s FROM old "
    "  WHERE orders.id = old.id AND NOT EXISTS (SELECT 1 FROM robot_job_items s WHERE s.order_id = orders.id "
    "  AND s.status = 'success' AND s.id <> %s) "
    "  RETURNING orders.*, old.tracking_number AS old_tracking, old.carrier AS old_carrier) "
    "SELECT o.id, o.workspace_id, o.name, o.total_value, o.shipping_address, o.shipping_city, o.shipping_department, "
    "o.pipeline_id, o.stage_id, o.tags, o.custom_fields, o.old_tracking, o.old_carrier, "
    "c.id, c.name, c.phone, c.email FROM o LEFT JOIN contacts c ON c.id = o.contact_id"
)
OUTBOX = (
    "INSERT INTO outbox_events (event_id, event_type, consumer, workspace_id, aggregate_id, payload, depth, "
    "created_at, available_at, attempts) VALUES "
)
OUTBOX_ROW = "(%s, %s, 'automations', %s, %s, %s, 0, %s, %s, 0)"
FINISH = (
    "UPDATE robot_jobs SET status = CASE WHEN success_count > 0 THEN 'completed' ELSE 'failed' END, "
    "failure_reason = CASE WHEN success_count > 0 THEN NULL ELSE 'Ningún pedido fue creado por el robot' END, "
    "finished_at = %s, updated_at = %s "
    "WHERE id = %s AND status IN ('pending', 'processing') AND success_count + error_count >= total_items "
    "RETURNING workspace_id, flow_run_id, status, success_count, error_count, total_items"
)
RESUME_ROW = (
    "INSERT INTO outbox_events (event_id, event_type, consumer, workspace_id, aggregate_id, payload, depth, "
    "created_at, available_at, attempts) VALUES (%s, 'robot.batch.completed', 'resume', %s, %s, %s, 0, %s, %s, 0)"
)
# SQLite: no FOR UPDATE (BEGIN IMMEDIATE holds the write lock), RETURNING sees only the updated table.
ITEM_BEFORE_SQLITE = "SELECT status, resolved_by, order_id FROM robot_job_items WHERE id = %s"
ITEM_SQLITE = (
    "UPDATE robot_job_items SET status = %s, tracking_number = %s, error_type = NULL, error_message = NULL, "
    "resolved_by = 'robot', completed_at = %s, updated_at = %s "
    "WHERE id = %s AND (status = 'pending' OR (status = 'error' AND resolved_by = 'robotjobs')) RETURNING order_id"
)
ORDER_BEFORE_SQLITE = (
    "SELECT o.id, o.workspace_id, o.name, o.total_value, o.shipping_address, o.shipping_city, o.shipping_department, "
    "o.pipeline_id, o.stage_id, o.tags, o.custom_fields, o.tracking_number, o.carrier, c.id, c.name, c.phone, c.email "
    "FROM orders o LEFT JOIN contacts c ON c.id = o.contact_id WHERE o.id = %s AND NOT EXISTS (SELECT 1 FROM "
    "robot_job_items s WHERE s.order_id = o.id AND s.status = 'success' AND s.id <> %s)"
)
ORDER_SQLITE = "UPDATE orders SET tracking_number = %s, carrier = 'COORDINADORA', updated_at = %s WHERE id = %s"


def _payload(order: tuple, contact: tuple, extra: dict) -> str:
    (oid, _ws, name, total, address, city, department, pipeline, stage, tags, custom, tracking, carrier) = order
    as_json = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731 (sqlite returns JSON text)
    return json.dumps(
        {
            **extra,
            "order": {
                "id": oid, "name": name, "total_value": str(total), "tracking_number": tracking, "carrier": carrier,
                "shipping_address": address, "shipping_city": city, "shipping_department": department,
                "pipeline_id": pipeline, "stage_id": stage, "tags": as_json(tags), "custom_fields": as_json(custom),
            },
            "contact": dict(zip(("id", "name", "phone", "email"), contact, strict=True)),
        },
        ensure_ascii=False,
    )  # fmt: skip


class Floor:
    """One sender's connection and the callback's SQL."""

    def __init__(self, database_url: str):
        url = make_url(database_url)
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            import sqlite3

            self.conn = sqlite3.connect(url.database, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=30000")
        else:
            import psycopg

            self.conn = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))

    def _q(self, sql: str) -> str:
        return sql.replace("%s", "?") if self.sqlite else sql

    def _one(self, cur, sql: str, params: tuple):
        cur.execute(self._q(sql), params)
        return cur.fetchone()

    def callback(self, item_id: str, secret: str, tracking: str) -> bool:
        """Record one `success` callback; True when it changed the item."""
        now = datetime.now(UTC)
        stamp = now.isoformat(sep=" ") if self.sqlite else now
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        try:
            job_id, workspace_id, stored = self._one(cur, AUTH, (item_id,))
            presented = hashlib.sha256(secret.encode()).hexdigest().encode()
            if not hmac.compare_digest(presented, (stored or "").encode()):
                raise PermissionError("bad secret")
            if self.sqlite:
                before = self._one(cur, ITEM_BEFORE_SQLITE, (item_id,))
                updated = self._one(cur, ITEM_SQLITE, ("success", tracking, stamp, stamp, item_id))
                changed = (updated[0], before[0]) if updated else None
            else:
                self._one(cur, LOCK_PG, (job_id,))
                changed = self._one(cur, ITEM_PG, ("success", tracking, now, now, item_id))
            if changed is None:
                self.conn.commit()
                return False
            order_id, status_before = changed
            cur.execute(self._q(COUNTERS), (1, -1 if status_before == "error" else 0, stamp, job_id))
            if self.sqlite:
                row = self._one(cur, ORDER_BEFORE_SQLITE, (order_id, item_id))
                if row is not None:
                    cur.execute(self._q(ORDER_SQLITE), (tracking, stamp, order_id))
            else:
                row = self._one(cur, ORDER_PG, (order_id, tracking, now, item_id))
            if row is not None:
                order, contact = row[:13], row[13:]
                old_tracking, old_carrier = order[11], order[12]
                shipped = order[:11] + (tracking, "COORDINADORA")
                events = [
                    ("field.changed", {"field": "tracking_number", "old_value": old_tracking, "new_value": tracking}),
                    ("field.changed", {"field": "carrier", "old_value": old_carrier, "new_value": "COORDINADORA"}),
                    ("robot.coord.completed", {"job_id": job_id, "item_id": item_id}),
                ]
                params: list = []
                for event_type, extra in events:
                    params += [str(uuid.uuid4()), event_type, workspace_id, order_id, _payload(shipped, contact, extra),
                               stamp, stamp]  # fmt: skip
                cur.execute(self._q(OUTBOX + ", ".join([OUTBOX_ROW] * len(events))), params)
            finished = self._one(cur, FINISH, (stamp, stamp, job_id))
            if finished is not None:
                ws, run, status, success, error, total = finished
                payload = json.dumps({"job_id": job_id, "flow_run_id": run, "status": status, "success_count": success,
                                      "error_count": error, "total_items": total})  # fmt: skip
                cur.execute(self._q(RESUME_ROW), (str(uuid.uuid4()), ws, job_id, payload, stamp, stamp))
            self.conn.commit()
            return True
        except BaseException:
            self.conn.rollback()
            raise

    def close(self) -> None:
        self.conn.close()


def run_floor(
    database_url: str,
    callbacks: list[tuple[str, str, str]],
    senders: int,
    *,
    probe: Callable[[], dict[str, float]] | None = None,
) -> dict:
    """Send `callbacks` (item id, secret, tracking) through the floor from `senders` connections at once. With
    `probe` (counters such as CPU seconds), the figures' "probe" holds how much each grew while sending (connections
    made and closed outside)."""
    floors = [Floor(database_url) for _ in range(senders)]
    for floor in floors:  # connect outside the timed part
        floor.conn.cursor().execute("SELECT 1")
        floor.conn.commit()
    try:
        before = probe() if probe else {}
        figures = run_senders(callbacks, floors, lambda floor, call: floor.callback(*call) or True)
        if probe:
            figures["probe"] = {key: value - before[key] for key, value in probe().items()}
        return figures
    finally:
        for floor in floors:
            floor.close()


def run_senders(calls: list, connections: list, send) -> dict:
    """One thread per connection takes the next call and `send(connection, call)`s it (False or an exception counts
    as an error); latency figures over all calls."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    position = iter(range(len(calls)))

    def sender(connection) -> None:
        mine, failed = [], 0
        while True:
            with lock:
                n = next(position, None)
            if n is None:
                break
            started = time.perf_counter()
            try:
                ok = send(connection, calls[n])
            except Exception:
                ok = False
            mine.append(time.perf_counter() - started)
            failed += not ok
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=sender, args=(c,)) for c in connections]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarise(latencies, time.perf_counter() - started, errors[0])


def summarise(latencies: list[float], wall: float, errors: int) -> dict:
    ordered = sorted(latencies)
    pick = lambda q: 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")  # noqa: E731
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall if wall else 0.0,
        "p50": pick(0.50),
        "p99": pick(0.99),
        "max": 1000 * ordered[-1] if ordered else float("nan"),
    }
