"""Run triton-sim until SIGTERM/SIGINT:

    python -m llmscen.services.triton_sim --options '{"image_size": 64, "ttft": "80ms"}'

prints one line `LISTENING grpc=HOST:P http=http://HOST:Q metrics=http://HOST:R`
once the server is ready, then serves; on SIGTERM or SIGINT it stops the server
and exits 0. Exit 2: invalid options; 1: the server failed to start or died.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from pydantic import ValidationError

from .options import TritonSimOptions
from .server import TritonSimError, start_triton_sim


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m llmscen.services.triton_sim",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--options", default="{}", help="TritonSimOptions as JSON")
    ap.add_argument("--host", help="overrides options.host")
    ap.add_argument("--port", type=int, help="gRPC port (0: a free one); overrides options")
    ap.add_argument("--log-file", help="keep tritonserver's log here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        raw = json.loads(args.options)
        if not isinstance(raw, dict):
            raise ValueError("--options must be a JSON object")
        if args.host is not None:
            raw["host"] = args.host
        if args.port is not None:
            raw["grpc_port"] = args.port
        options = TritonSimOptions.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        print(f"triton-sim: invalid options: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        sim = start_triton_sim(options, log_file=args.log_file, die_with_parent=True)
    except TritonSimError as exc:
        print(f"triton-sim: {exc}", file=sys.stderr)
        return 1
    with sim:
        print(f"LISTENING grpc={sim.grpc_url} http={sim.http_url} "
              f"metrics={sim.http_url.rsplit(':', 1)[0]}:{sim.ports['metrics']}", flush=True)
        while not stop.wait(0.5):
            if not sim.alive():
                print(f"triton-sim: tritonserver exited unexpectedly; last lines of its log:\n"
                      f"{sim.log_tail()}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
