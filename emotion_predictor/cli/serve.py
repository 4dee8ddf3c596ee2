"""Serve next-turn emotion forecasts over HTTP: POST /v1/forecast and /v1/forecast/batch, GET /health, /docs.

    uv run python ep_serve.py --json_file args/ep_serve_arg.json [--key value ...]

Takes the port first (a port in use is one error line, before the model loads), loads the model
once, then serves with uvicorn until Ctrl-C or SIGTERM, which finish the requests in flight and
exit 0. Requests that arrive together share one forward pass (micro-batching); docs/serving.md
has the API, the errors and the limits.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

from emotion_predictor.errors import UserError, run_main
from emotion_predictor.logs import setup_logging

logger = logging.getLogger(__name__)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for uvicorn, or a UserError that says why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse the port at once
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port}: {err.strerror or err}; stop what uses that port or set another "
            "with --port, and check --host"
        ) from None
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    from emotion_predictor.arguments import ServeArguments
    from emotion_predictor.config import load_config

    (args,), _, _ = load_config([ServeArguments], argv, prog="ep_serve.py", description=__doc__)
    logging.getLogger().setLevel(args.log_level.upper())
    sock = listening_socket(args.host, args.port)
    # torch, transformers and the web stack: only once the config is valid and the port is ours
    import uvicorn
    from transformers.utils import logging as transformers_logging

    from emotion_predictor.prediction.predictor import EmotionPredictor
    from emotion_predictor.serving.app import create_app

    transformers_logging.disable_progress_bar()
    with sock:
        predictor = EmotionPredictor.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
        logger.info("loaded %r", predictor)
        config = uvicorn.Config(
            create_app(predictor, args),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
        )
        address = f"[{args.host}]" if ":" in args.host else args.host
        logger.info("serving on http://%s:%d (API docs: /docs; Ctrl-C stops)", address, args.port)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            # uvicorn has already shut down gracefully on Ctrl-C; it raises the signal again only
            # so that a caller may see it, and for a server Ctrl-C is the normal way to stop.
            logger.info("stopped")
    return 0


def cli() -> None:
    """The console script `ep-serve`, and `python ep_serve.py`."""
    setup_logging(logging.INFO)
    run_main(main)


if __name__ == "__main__":
    cli()
