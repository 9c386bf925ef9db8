"""The ``serve`` subcommand (the engine as a Ray Serve application) and ``--server`` for
``ask``/``encode`` (the same commands, with the engine on a server)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import MovieChatError

EXIT_USAGE = 2
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- ask/encode --server
def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        help="use the engine on a MovieChat server (e.g. http://gpu-box:8000) instead of here",
    )
    parser.add_argument(
        "--token-file",
        metavar="F",
        help="the server's token (default: server-token in the config dir)",
    )


def make_engine(args: argparse.Namespace) -> Any:
    """The engine ``ask``/``encode`` use: a ``RemoteEngine`` with ``--server``, else None."""
    if not getattr(args, "server", None):
        if getattr(args, "token_file", None):
            _usage("--token-file needs --server")
        return None
    if args.model_dir:
        _usage("--model-dir is the server's business: it cannot be combined with --server")
    try:
        from moviechat_desktop.service.remote_client import RemoteEngine
    except ImportError as err:
        raise MovieChatError(
            f"--server needs the server extra ({err.name} is missing): pip install -e '.[server]'"
        ) from None
    return RemoteEngine(args.server, args.token_file, use_cache=not args.no_cache)


def _usage(message: str) -> None:
    print(f"moviechat-desktop: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


# --------------------------------------------------------------------------- serve
def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the assistant's engine as a server (Ray Serve) for other computers",
        description=(
            "Start (or join, with --address) a Ray cluster, deploy the engine and print "
            "'serving on http://HOST:PORT' once it accepts requests. Every request needs the "
            "bearer token in --token-file (created, random, when missing). Ctrl-C stops it."
        ),
    )
    serve.add_argument("--model-dir", help="a model directory (default: installed weights)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--token-file", metavar="F", help="the token (default: server-token in the config dir)"
    )
    serve.add_argument("--replicas", type=int, default=1, metavar="N", help="engine copies")
    serve.add_argument("--address", help="join this Ray cluster ('auto': the one on this machine)")
    serve.add_argument("--num-cpus", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(handler=run_serve)


def ensure_token(path: Path) -> str:
    """The token in ``path``; a new random one (file mode 0600) when the file is missing."""
    from moviechat_desktop.service.remote_client import read_token

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile: use theirs
            return read_token(path)
        except OSError as err:
            raise MovieChatError(f"cannot write the token file {path}: {err.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        print(f"moviechat-desktop: a new token is in {path}", file=sys.stderr)
        return token
    if path.stat().st_mode & 0o077:
        print(
            f"moviechat-desktop: warning: {path} is readable by other users (chmod 600 it)",
            file=sys.stderr,
        )
    return read_token(path)


def check_weights(model_dir: str | None) -> None:
    """``WeightsMissing``/``WeightsCorrupt`` before Ray starts, rather than replicas failing."""
    if model_dir:
        from moviechat_desktop.engine.model.paths import ModelPaths

        ModelPaths.from_reference_dir(model_dir)
    else:
        from moviechat_desktop.engine.weights import resolve_model_paths

        resolve_model_paths()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_address(host: str) -> str:
    """An address a client can use for ``host`` (a wildcard becomes this machine's address)."""
    if host not in ("0.0.0.0", "::", ""):
        return f"[{host}]" if ":" in host else host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
            return probe.getsockname()[0]
    except OSError:
        return socket.gethostname()


def _stdout_for_the_ready_line_only() -> Any:
    """A private handle on standard output, with file descriptor 1 pointed at standard error.

    Ray writes its own lines (its workers' logs, ``(raylet) ...`` notices) to the driver's
    standard output at any time, even before the server is up: seen in CI as the first line
    a script reading ``serving on ...`` got. From here on, anything written to fd 1 or
    ``sys.stdout`` goes to standard error, and standard output carries only the ready line.
    """
    sys.stdout.flush()
    ready_out = os.fdopen(os.dup(1), "w", encoding="utf-8", closefd=True)
    os.dup2(2, 1)
    return ready_out


def run_serve(args: argparse.Namespace) -> int:
    from moviechat_desktop.service.remote_client import default_token_file

    if not 0 < args.port < 65536:
        _usage(f"--port {args.port} is not a port (1-65535)")
    if args.replicas < 1:
        _usage("--replicas must be at least 1")
    if args.address is None:  # a cluster's nodes may hold the weights elsewhere: not checked
        check_weights(args.model_dir)
    try:
        from moviechat_desktop.service import serve_deployment
    except ImportError as err:
        raise MovieChatError(
            f"serve needs the server extra ({err.name} is missing): pip install -e '.[server]'"
        ) from None
    token = ensure_token(Path(args.token_file) if args.token_file else default_token_file())
    if not is_loopback(args.host):
        print(
            f"moviechat-desktop: warning: listening on {args.host}: other computers can reach "
            "the server; it speaks plain HTTP (put a TLS reverse proxy in front, see README)",
            file=sys.stderr,
        )
    ready_out = _stdout_for_the_ready_line_only()
    stop = threading.Event()
    starting = [True]

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        if starting[0]:
            raise KeyboardInterrupt  # ends a start that is still under way

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        serve_deployment.start(
            args.model_dir,
            token,
            host=args.host,
            port=args.port,
            replicas=args.replicas,
            address=args.address,
            num_cpus=args.num_cpus,
        )
        starting[0] = False
        # Ray installs its own handlers while starting: ours come back for a clean stop
        signal.signal(signal.SIGTERM, on_signal)
        previous_int = signal.signal(signal.SIGINT, on_signal)
        try:
            print(f"serving on http://{public_address(args.host)}:{args.port}", file=ready_out)
            ready_out.flush()
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            serve_deployment.stop()
            signal.signal(signal.SIGINT, previous_int)
    except KeyboardInterrupt:
        pass  # stopped while starting: start() has shut down what it had started
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("moviechat-desktop: server stopped", file=sys.stderr)
    return 0
