"""`robotjobs dead-letters` (list, show, replay) and `robotjobs spool` (status, replay) for operators."""

from __future__ import annotations

import io
import json

from cryptography.fernet import Fernet

from cli.main import main
from domain import dead_letters
from domain.batches import jobs
from domain.batches.dispatch import hash_callback_secret
from sample_data.seed import seed_demo
from webhook.spool import Spool


def run(argv, database_url):
    out = io.StringIO()
    code = main(argv, out=out, deployments=object(), database_url=database_url)
    return code, out.getvalue()


def _job(uow, secret="s" * 32):
    with uow() as tx:
        demo = seed_demo(tx.session, credentials_key=Fernet.generate_key().decode())
        job = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:2]).job
        jobs.start_job(tx.session, job.id, flow_run_id="run-1")
        jobs.claim_dispatch(tx.session, job.id, callback_secret_hash=hash_callback_secret(secret))
        items = [v.item.id for v in jobs.get_job_view(tx.session, job.id).items]
        tx.commit()
    return job.id, items, secret


def test_dead_letters_list_show_and_replay(uow, database_url, capsys):
    job_id, items, _ = _job(uow)
    body = json.dumps({"itemId": items[0], "status": "success", "trackingNumber": "555"}).encode()
    with uow() as tx:
        letter_id = dead_letters.add(
            tx.session, reason="422 validation_error: status", body=body, headers={}, auth="job", job_id=job_id
        ).id
        tx.commit()
    code, text = run(["dead-letters"], database_url)
    assert code == 0 and "pendiente" in text and job_id in text and "422 validation_error" in text
    code, text = run(["dead-letters", "show", str(letter_id)], database_url)
    assert code == 0 and body.decode() in text
    code, text = run(["dead-letters", "replay", str(letter_id)], database_url)
    assert code == 0 and "registrado: 1 cambiado(s)" in text
    code, _ = run(["dead-letters", "replay", str(letter_id)], database_url)
    assert code == 2 and "ya se reprodujo" in capsys.readouterr().err
    code, text = run(["dead-letters", "--pending"], database_url)
    assert code == 0 and "Sin cartas muertas." in text


def test_spool_status_and_replay_by_hand(uow, database_url, tmp_path):
    job_id, items, secret = _job(uow)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    for n, item_id in enumerate(items):
        spool.write(
            {"X-Callback-Secret": secret, "Content-Type": "application/json"},
            json.dumps({"itemId": item_id, "status": "success", "trackingNumber": f"8{n}"}).encode(),
        )
    code, text = run(["spool", "--dir", str(spool.directory)], database_url)
    assert code == 0 and "2 en espera" in text
    code, text = run(["spool", "--dir", str(spool.directory), "replay"], database_url)
    assert code == 0 and "recorded 2" in text and "quedan 0" in text
    assert spool.names() == []
    with uow() as tx:
        assert jobs.get_job(tx.session, job_id).status == "completed"
