"""``python -m realtime_emulator --port 8765 [--host 127.0.0.1] [--script default]``."""

from __future__ import annotations

import argparse
import logging
import os

from .script import available_scripts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m realtime_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--script",
        default="default",
        help=f"bundled script ({', '.join(available_scripts())}) or path to a script .json file",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("REALTIME_EMULATOR_API_KEY"),
        help="the only standard key accepted (default: any key starting with sk-)",
    )
    parser.add_argument(
        "--azure-api-key",
        default=os.environ.get("REALTIME_EMULATOR_AZURE_API_KEY"),
        help="the only Azure api-key accepted (default: any 32+ letters and digits)",
    )
    parser.add_argument(
        "--azure-deployment",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="an Azure deployment of a realtime model (repeatable); each realtime model is also deployed under "
        "its own name",
    )
    parser.add_argument("--max-call-seconds", type=float, default=3600.0)
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=20.0,
        help="seconds a call waits for its browser peer to connect before it ends (benchmarks that play "
        "no media raise it)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    deployments: dict[str, str] = {}
    for item in args.azure_deployment:
        name, sep, model = item.partition("=")
        if not sep or not name or not model:
            parser.error(f"--azure-deployment takes NAME=MODEL, got {item!r}")
        deployments[name] = model
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from .app import run

    run(args.host, args.port, api_key=args.api_key, script=args.script, max_call_seconds=args.max_call_seconds,
        azure_api_key=args.azure_api_key, azure_deployments=deployments, connect_timeout=args.connect_timeout)


if __name__ == "__main__":
    main()
