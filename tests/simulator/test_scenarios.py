"""Run-wide and per-order scenarios of the simulator, selected by constructor, configure() or /_sim/config."""

from __future__ import annotations

import time

import httpx
import pytest

from simulator.server import start_simulator
from tests.simulator.conftest import make_batch, wait_idle

DISPATCH = "/api/crear-pedidos-batch"


def dispatch(simulator, body) -> httpx.Response:
    return httpx.post(simulator.url + DISPATCH, json=body, timeout=10)


def configure_over_http(simulator, **changes) -> dict:
    response = httpx.post(simulator.url + "/_sim/config", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    "scenario, error_type, message",
    [
        ("invalid_city", "portal", "No se encontró el municipio"),
        ("login_failure", "portal", "Login fallido en el portal de Coordinadora"),
    ],
)
def test_every_order_fails_the_same_way(simulator, receiver, scenario, error_type, message):
    assert configure_over_http(simulator, scenario=scenario)["scenario"] == scenario
    body = make_batch(receiver.url, 2)
    assert dispatch(simulator, body).status_code == 200
    receiver.wait_for(2)
    assert receiver.bodies() == [
        {"itemId": o["itemId"], "status": "error", "errorType": error_type, "errorMessage": message}
        for o in body["orders"]
    ]


def test_fatal_path_re_reports_every_order_as_unknown_error(simulator, receiver):
    simulator.configure(scenario="fatal", fatal_after=2)
    body = make_batch(receiver.url, 4)
    dispatch(simulator, body)
    receiver.wait_for(6)
    wait_idle(simulator)
    results = receiver.bodies()
    assert len(results) == 6
    items = [o["itemId"] for o in body["orders"]]
    assert [r["itemId"] for r in results[:2]] == items[:2] and all(r["status"] == "success" for r in results[:2])
    assert results[2:] == [
        {
            "itemId": item,
            "status": "error",
            "errorType": "unknown",
            "errorMessage": "Error fatal en el procesamiento del batch",
        }
        for item in items
    ]


def test_duplicate_callbacks_send_each_result_twice(simulator, receiver):
    simulator.configure(duplicate_callbacks=True)
    body = make_batch(receiver.url, 2)
    dispatch(simulator, body)
    receiver.wait_for(4)
    results = receiver.bodies()
    assert results[0] == results[1] and results[2] == results[3] and results[0] != results[2]


def test_early_callbacks_arrive_before_the_200(receiver):
    with start_simulator(delay=0.2, early_callbacks=1) as simulator:
        body = make_batch(receiver.url, 3)
        response = dispatch(simulator, body)
        assert response.status_code == 200
        assert len(receiver.received) == 1  # already there when the 200 came back; the rest come later
        receiver.wait_for(3)


def test_silent_robot_never_calls_back(simulator, receiver):
    simulator.configure(scenario="silent")
    dispatch(simulator, make_batch(receiver.url, 2))
    state = wait_idle(simulator)
    assert receiver.received == [] and state["callbacks"] == []


def test_slow_robot_holds_the_workspace(receiver):
    with start_simulator(delay=0.5) as simulator:
        dispatch(simulator, make_batch(receiver.url, 1))
        assert simulator.state()["busyWorkspaces"] == ["ws-1"] and receiver.received == []
        receiver.wait_for(1)


@pytest.mark.parametrize("status", [500, 409, 503])
def test_forced_dispatch_status_processes_nothing(simulator, receiver, status):
    simulator.configure(dispatch_status=status)
    body = make_batch(receiver.url, 1)
    response = dispatch(simulator, body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html" if status >= 500 else "application/json")
    state = wait_idle(simulator)
    assert state["batches"] == [] and state["posts"] == {body["jobId"]: 1} and receiver.received == []


def test_per_order_overrides_by_order_id_referencia_and_city(simulator, receiver):
    simulator.configure(
        order_scenarios={
            "order-0": "login_failure",
            "REF-1": "in_process",
            "order-3": "silent",
            "order-4": "duplicate",
        },
        unknown_cities=["BUENAVISTA (CORD)"],
    )
    body = make_batch(receiver.url, 5, o2={"ciudad": "BUENAVISTA (CORD)"})
    dispatch(simulator, body)
    wait_idle(simulator)
    results = receiver.bodies()
    items = [o["itemId"] for o in body["orders"]]
    assert [(r["itemId"], r.get("errorMessage")) for r in results] == [
        (items[0], "Login fallido en el portal de Coordinadora"),
        (items[1], "Pedido ya en proceso"),
        (items[2], "No se encontró el municipio"),
        (items[4], None),
        (items[4], None),
    ]
    assert results[1]["errorType"] == "validation" and results[3] == results[4]


def test_config_endpoint_rejects_unknown_fields_and_reset_forgets_jobs(simulator, receiver):
    assert httpx.post(simulator.url + "/_sim/config", json={"nope": 1}).status_code == 400
    assert httpx.post(simulator.url + "/_sim/config", json={"scenario": "bogus"}).status_code == 400
    body = make_batch(receiver.url, 1)
    dispatch(simulator, body)
    receiver.wait_for(1)
    wait_idle(simulator)
    assert httpx.post(simulator.url + "/_sim/reset").status_code == 200
    assert simulator.state()["posts"] == {}
    dispatch(simulator, body)  # the cache was forgotten too: processed again
    receiver.wait_for(2)


def test_held_orders_report_only_after_release(simulator, receiver):
    simulator.configure(order_scenarios={"order-0": "held"})
    body = make_batch(receiver.url, 2)
    assert dispatch(simulator, body).status_code == 200
    time.sleep(0.3)
    assert receiver.received == [] and simulator.state()["busyWorkspaces"] == ["ws-1"]  # still working on it
    assert httpx.post(simulator.url + "/_sim/release").status_code == 200
    receiver.wait_for(2)
    assert [r["status"] for r in receiver.bodies()] == ["success", "success"]


def test_a_reset_drops_held_batches_without_calling_back(simulator, receiver):
    simulator.configure(order_scenarios={"order-0": "held"})
    dispatch(simulator, make_batch(receiver.url, 1))
    simulator.reset()
    time.sleep(0.3)
    assert receiver.received == [] and simulator.state()["callbacks"] == []


def test_unusual_but_honest_fields(simulator, receiver):
    simulator.configure(
        order_scenarios={"order-0": "unknown_error_type", "order-1": "long_error", "order-2": "no_tracking"}
    )
    body = make_batch(receiver.url, 3)
    dispatch(simulator, body)
    unknown, long, no_tracking = (r.json for r in receiver.wait_for(3))
    assert (unknown["errorType"], unknown["errorMessage"]) == ("captcha", "No se pudo resolver el captcha del portal")
    assert long["errorType"] == "portal" and len(long["errorMessage"]) == 5000 and long["errorMessage"].count("\n") > 50
    assert no_tracking == {"itemId": body["orders"][2]["itemId"], "status": "success"}


def test_a_cold_start_answers_late_while_results_already_flow(receiver):
    with start_simulator(delay=0.05, answer_delay=1.0) as simulator:
        body = make_batch(receiver.url, 2)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(simulator.url + DISPATCH, json=body, timeout=0.5)
        receiver.wait_for(2)  # the batch went on without its answer
        assert simulator.state()["posts"] == {body["jobId"]: 1}


def test_a_dropped_answer_resets_the_connection_after_taking_the_batch(simulator, receiver):
    simulator.configure(drop_answer=True)
    body = make_batch(receiver.url, 1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        dispatch(simulator, body)
    receiver.wait_for(1)
    assert simulator.state()["batches"][0]["jobId"] == body["jobId"]
