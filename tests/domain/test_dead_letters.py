"""Dead letters in the domain: bodies kept byte for byte, newest first, replayed at most once."""

from __future__ import annotations

from domain import dead_letters


def test_bodies_round_trip_as_text_or_base64(uow):
    bodies = [b'{"itemId":"a","m":"Ciudad vac\xc3\xada"}', b"\xff\xfe not utf-8", b'{"nul":"\x00"}']
    with uow() as tx:
        ids = [
            dead_letters.add(tx.session, reason="r", body=body, headers={"webhook-id": "m"}, auth="signature").id
            for body in bodies
        ]
        tx.commit()
    with uow() as tx:
        stored = [dead_letters.get(tx.session, letter_id) for letter_id in ids]
        assert [dead_letters.raw_body(letter) for letter in stored] == bodies
        assert [letter.headers.get(dead_letters.ENCODING_KEY) for letter in stored] == [None, "base64", "base64"]
        assert stored[0].body == '{"itemId":"a","m":"Ciudad vacía"}'


def test_list_and_mark_replayed_once(uow):
    with uow() as tx:
        first = dead_letters.add(tx.session, reason="x" * 5000, body=b"{}", headers={}, auth="job", job_id="job-1")
        second = dead_letters.add(tx.session, reason="y", body=b"{}", headers={}, auth="legacy")
        tx.commit()
    assert len(first.reason) == 2000
    with uow() as tx:
        assert [letter.id for letter in dead_letters.list_letters(tx.session)] == [second.id, first.id]
        assert [letter.id for letter in dead_letters.list_letters(tx.session, job_id="job-1")] == [first.id]
        assert dead_letters.mark_replayed(tx.session, first.id, result="ok") is True
        assert dead_letters.mark_replayed(tx.session, first.id, result="again") is False
        dead_letters.note_replay_failure(tx.session, first.id, result="ignored: already replayed")
        tx.commit()
    with uow() as tx:
        assert [letter.id for letter in dead_letters.list_letters(tx.session, pending_only=True)] == [second.id]
        assert dead_letters.get(tx.session, first.id).replay_result == "ok"
