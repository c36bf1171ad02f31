"""`python -m simulator --host 127.0.0.1 --port 8100 [options]`: run the robot simulator in the foreground."""

from __future__ import annotations

import argparse
import logging

from simulator.scenarios import OrderScenario, Report, Scenario, SimConfig
from simulator.server import make_server


def _order_scenario(text: str) -> tuple[str, OrderScenario]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected KEY=SCENARIO (KEY: orderId or referencia)")
    return key, OrderScenario(value)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimConfig]:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Coordinadora robot simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--scenario", choices=[s.value for s in Scenario], default="success")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per order (production: ~2)")
    parser.add_argument("--duplicate-callbacks", action="store_true", help="send every callback twice")
    parser.add_argument("--early-callbacks", type=int, default=0, help="callbacks sent before the 200")
    parser.add_argument("--fatal-after", type=int, default=1, help="successes before the fatal path")
    parser.add_argument("--dispatch-status", type=int, help="answer every dispatch with this status")
    parser.add_argument("--answer-delay", type=float, default=0.0, help="seconds the 200 comes after processing starts")
    parser.add_argument("--drop-answer", action="store_true", help="process, but reset the dispatch connection")
    parser.add_argument("--report", choices=[r.value for r in Report], default="per_order")
    parser.add_argument("--webhook-secret", help="whsec_... secret for the signed batch report")
    parser.add_argument(
        "--order-scenario",
        action="append",
        type=_order_scenario,
        default=[],
        metavar="KEY=SCENARIO",
        help="per-order override keyed by orderId or referencia",
    )
    parser.add_argument("--unknown-city", action="append", default=[], help="ciudad the portal does not know")
    parser.add_argument("--callback-timeout", type=float, help="seconds (the production robot sets none)")
    args = parser.parse_args(argv)
    config = SimConfig(
        scenario=args.scenario,
        delay=args.delay,
        duplicate_callbacks=args.duplicate_callbacks,
        early_callbacks=args.early_callbacks,
        fatal_after=args.fatal_after,
        dispatch_status=args.dispatch_status,
        answer_delay=args.answer_delay,
        drop_answer=args.drop_answer,
        report=args.report,
        webhook_secret=args.webhook_secret,
        order_scenarios=dict(args.order_scenario),
        unknown_cities=args.unknown_city,
        callback_timeout=args.callback_timeout,
    )
    return args, config


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args, config = parse_args(argv)
    server = make_server(args.host, args.port, config)
    logging.getLogger("simulator").info(
        "robot simulator on http://%s:%s (%s)", args.host, args.port, config.scenario.value
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.robot.stop()
        server.server_close()


if __name__ == "__main__":
    main()
