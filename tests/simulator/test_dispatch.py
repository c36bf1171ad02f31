"""The simulator's answers to POST /api/crear-pedidos-batch (robot-protocol.md §1), over real loopback HTTP."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.simulator.conftest import make_batch, wait_idle

DISPATCH = "/api/crear-pedidos-batch"


def post(simulator, body, **kwargs) -> httpx.Response:
    return httpx.post(simulator.url + DISPATCH, json=body, timeout=10, **kwargs)


def test_accepts_a_batch_and_reports_every_order_once(simulator, receiver):
    body = make_batch(receiver.url, 3)
    response = post(simulator, body)
    assert response.status_code == 200
    assert response.json() == {"success": True, "jobId": body["jobId"], "message": "Batch aceptado, procesando..."}
    receiver.wait_for(3)
    state = wait_idle(simulator)
    results = receiver.bodies()
    assert [r["itemId"] for r in results] == [o["itemId"] for o in body["orders"]]
    for result in results:
        assert set(result) == {"itemId", "status", "trackingNumber"}
        assert result["status"] == "success" and result["trackingNumber"].startswith("7600")
    assert len({r["trackingNumber"] for r in results}) == 3
    assert state["posts"] == {body["jobId"]: 1}
    assert state["batches"][0] == {
        "jobId": body["jobId"],
        "workspaceId": "ws-1",
        "username": "portal-user",
        "orders": 3,
        "state": "done",
    }
    assert [c["httpStatus"] for c in state["callbacks"]] == [200, 200, 200]


def test_same_job_id_again_gets_the_same_answer_and_nothing_is_processed_twice(simulator, receiver):
    body = make_batch(receiver.url, 2)
    first = post(simulator, body)
    second = post(simulator, body)  # while still running
    receiver.wait_for(2)
    wait_idle(simulator)
    third = post(simulator, body)  # after it finished
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.content == second.content == third.content
    wait_idle(simulator)
    assert len(receiver.received) == 2
    assert simulator.state()["posts"][body["jobId"]] == 3


def test_another_batch_of_the_same_workspace_gets_409_and_its_job_id_is_not_remembered(simulator, receiver):
    simulator.configure(delay=0.3)
    running = make_batch(receiver.url, 2, workspace="ws-busy")
    other = make_batch(receiver.url, 1, workspace="ws-busy")
    assert post(simulator, running).status_code == 200
    refused = post(simulator, other)
    assert refused.status_code == 409
    assert refused.json() == {"success": False, "error": "Ya hay un batch en proceso para este workspace"}
    assert post(simulator, make_batch(receiver.url, 1, workspace="ws-other")).status_code == 200
    wait_idle(simulator)
    assert {r["itemId"] for r in receiver.bodies()}.isdisjoint({o["itemId"] for o in other["orders"]})
    assert post(simulator, other).status_code == 200  # not cached: accepted now that the workspace is free
    receiver.wait_for(4)
    assert simulator.state()["posts"][other["jobId"]] == 2


def test_all_cities_empty_is_a_400_and_each_order_still_gets_a_validation_callback(simulator, receiver):
    body = make_batch(receiver.url, 2, o0={"ciudad": ""}, o1={"ciudad": "  "})
    for attempt in (1, 2):  # re-sent all-invalid batches repeat their validation callbacks
        response = post(simulator, body)
        assert response.status_code == 400
        assert response.json() == {"success": False, "error": "Todos los pedidos tienen ciudad inválida"}
        receiver.wait_for(2 * attempt)
    assert (
        receiver.bodies()
        == [
            {
                "itemId": o["itemId"],
                "status": "error",
                "errorType": "validation",
                "errorMessage": "Ciudad vacía o no proporcionada",
            }
            for o in body["orders"]
        ]
        * 2
    )
    assert simulator.state()["batches"] == []


def test_an_empty_city_in_a_mixed_batch_gets_a_validation_callback(simulator, receiver):
    body = make_batch(receiver.url, 2, o1={"ciudad": None})
    assert post(simulator, body).status_code == 200
    by_item = {r["itemId"]: r for r in (x.json for x in receiver.wait_for(2))}
    assert by_item[body["orders"][0]["itemId"]]["status"] == "success"
    assert by_item[body["orders"][1]["itemId"]]["errorType"] == "validation"


@pytest.mark.parametrize(
    "path, expected",
    [
        (("workspaceId",), "workspaceId"),
        (("credentials",), "credentials"),
        (("callbackUrl",), "callbackUrl"),
        (("jobId",), "jobId"),
        (("orders",), "orders"),
        (("credentials", "password"), "credentials.password"),
        (("orders", 0, "itemId"), "itemId"),
        (("orders", 0, "pedidoInput", "nombres"), "nombres"),
        (("orders", 1, "pedidoInput", "esRecaudoContraentrega"), "esRecaudoContraentrega"),
    ],
)
def test_a_missing_required_field_is_a_400(simulator, receiver, path, expected):
    body = make_batch(receiver.url, 2)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    response = post(simulator, body)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": f"Campo requerido: {expected}"}


def test_falsy_but_present_fields_are_accepted(simulator, receiver):
    body = make_batch(receiver.url, 1, o0={"apellidos": "", "totalConIva": 0, "esRecaudoContraentrega": False})
    assert post(simulator, body).status_code == 200


@pytest.mark.parametrize("raw", [None, "not json"])
def test_a_malformed_body_is_a_500_html_page(simulator, receiver, raw):
    if raw is None:
        body = make_batch(receiver.url, 1)
        body["orders"] = [None]
        response = post(simulator, body)
    else:
        response = httpx.post(simulator.url + DISPATCH, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_the_password_is_never_exposed(simulator, receiver):
    body = make_batch(receiver.url, 1)
    post(simulator, body)
    wait_idle(simulator)
    state = httpx.get(simulator.url + "/_sim/state").text
    assert "portal-pass-XYZ" not in state and "s3cret" not in state
    assert "portal-user" in state


def test_concurrent_duplicate_dispatches_start_one_batch(simulator, receiver):
    body = make_batch(receiver.url, 2)
    threads = [threading.Thread(target=post, args=(simulator, body)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = wait_idle(simulator)
    assert state["posts"][body["jobId"]] == 5
    assert len(state["batches"]) == 1 and len(receiver.wait_for(2)) == 2
