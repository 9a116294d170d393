"""`gestan-release serve-updates` and `gestan-release updates ACTION` (publish, yank, rollout,
show, export, keygen).

Heavy imports (uvicorn, httpx, cryptography) happen inside the handlers so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gestan_release.commands import command, note, settings_from
from gestan_release.errors import GestanReleaseError


def register(subparsers: Any) -> None:
    serve = command(subparsers, "serve-updates", _serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8800, help="port (default: %(default)s)")
    serve.add_argument(
        "--data", type=Path, metavar="DIR", help="the store to serve (default: <STATE_DIR>/updates)"
    )

    updates = subparsers.add_parser(
        "updates",
        help="manage the update endpoint by hand",
        description=(
            "Publish, yank, stage or export releases of the update endpoint: the server at "
            "UPDATES_URL, or the local store <STATE_DIR>/updates when it is unset."
        ),
    )
    sub = updates.add_subparsers(dest="updates_command", metavar="ACTION")
    sub.required = True

    publish = command(sub, "publish", _publish)
    publish.add_argument("--channel", default="stable", help="channel (default: %(default)s)")
    publish.add_argument(
        "--file", metavar="ENTRY.json", help="the release entry as JSON ('-': stdin)"
    )
    publish.add_argument("--version", dest="release_version", metavar="V", help="e.g. 15.4.2")
    publish.add_argument(
        "--artifact",
        nargs=4,
        action="append",
        metavar=("PLATFORM", "URL", "SHA256", "SIZE"),
        help="an installer for one platform (repeat for several)",
    )
    publish.add_argument("--label", help='shown to users (default: from the version, "15.4 U2")')
    publish.add_argument("--critical", action="store_true", help="fixes a flash ticket")
    publish.add_argument("--min-version", metavar="V", help="lowest version that may update to it")
    publish.add_argument("--rollout", type=int, metavar="PERCENT", help="staged rollout, 0–100")
    publish.add_argument("--notes-url", metavar="URL", help="the forum post of the release")

    yank = command(sub, "yank", _yank)
    yank.add_argument("version", metavar="VERSION")
    yank.add_argument("--channel", default="stable", help="channel (default: %(default)s)")
    yank.add_argument("--reason", required=True, help="why, shown to the installs running it")

    rollout = command(sub, "rollout", _rollout)
    rollout.add_argument("version", metavar="VERSION")
    rollout.add_argument("percent", type=int, metavar="PERCENT")
    rollout.add_argument("--channel", default="stable", help="channel (default: %(default)s)")

    show = command(sub, "show", _show)
    show.add_argument("--channel", default="stable", help="channel (default: %(default)s)")

    export = command(sub, "export", _export)
    export.add_argument("--to", required=True, type=Path, metavar="DIR", help="output directory")
    export.add_argument(
        "--data", type=Path, metavar="DIR", help="store (default: <STATE_DIR>/updates)"
    )
    export.add_argument("--channel", action="append", help="only this channel (repeatable)")

    command(sub, "keygen", _keygen)


def _serve(args: argparse.Namespace) -> int:
    """run the update-check server

    Serve /v1/check, the signed channel manifests and the admin API (PUT/PATCH, Bearer
    GESTAN_RELEASE_UPDATES_TOKEN; without a token the admin API is disabled). Manifests are signed
    with UPDATES_SIGNING_KEY, created if missing."""
    from gestan_release.updates.publisher import local_store
    from gestan_release.updates.server import UpdateServer, serve

    settings = settings_from(args)
    store = local_store(settings, args.data)
    token = settings.updates_token.get_secret_value() if settings.updates_token else None
    app = UpdateServer(store, token=token, channels=settings.updates_channels)
    note(
        f"serving {store.root} on http://{args.host}:{args.port} "
        f"(admin API {'on' if token else 'off: no UPDATES_TOKEN'}; "
        f"public key {store.signer.public_b64()})"
    )
    serve(app, args.host, args.port)
    return 0


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _entry_from(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            entry = json.loads(text)
        except ValueError as exc:
            raise GestanReleaseError(f"{args.file} is not JSON: {exc}") from None
        if not isinstance(entry, dict):
            raise GestanReleaseError(f"{args.file} must hold one JSON object")
    else:
        entry = {}
    if args.release_version:
        entry["version"] = args.release_version
    artifacts = dict(entry.get("artifacts") or {})
    for platform, url, sha256, size in args.artifact or ():
        if not size.isdigit():
            raise GestanReleaseError(
                f"--artifact {platform}: SIZE must be a byte count, not {size!r}"
            )
        artifacts[platform] = {"url": url, "sha256": sha256, "size": int(size)}
    if artifacts:
        entry["artifacts"] = artifacts
    for name in ("label", "min_version", "rollout", "notes_url"):
        value = getattr(args, name)
        if value is not None:
            entry[name] = value
    if args.critical:
        entry["critical"] = True
    if "version" not in entry or "artifacts" not in entry:
        raise GestanReleaseError("publish needs --version and at least one --artifact (or --file)")
    return entry


def _publisher(args: argparse.Namespace) -> Any:
    from gestan_release.updates.publisher import publisher_for

    return publisher_for(settings_from(args))


def _publish(args: argparse.Namespace) -> int:
    """publish a release on a channel

    Publish a release entry, from --file or from the options. Publishing the same release again is
    a success; a different one under a published version is refused."""
    result = _publisher(args).publish(args.channel, _entry_from(args))
    _print(result)
    if not result.get("changed", True):
        note(f"{result['release']['version']} was already published on {args.channel}: unchanged")
    return 0


def _yank(args: argparse.Namespace) -> int:
    """withdraw a release

    Withdraw a release: no install is offered it, and installs running it are told."""
    _print(_publisher(args).yank(args.channel, args.version, args.reason))
    return 0


def _rollout(args: argparse.Namespace) -> int:
    """set the staged rollout of a release

    Offer a release to PERCENT % of installs (sticky per install); 0 halts it, 100 is everyone.
    Critical releases and manual checks skip a partial rollout."""
    _print(_publisher(args).set_rollout(args.channel, args.version, args.percent))
    return 0


def _show(args: argparse.Namespace) -> int:
    """print a channel's manifest

    Print a manifest."""
    _print(_publisher(args).manifest(args.channel))
    return 0


def _export(args: argparse.Namespace) -> int:
    """write the signed manifests as static files

    Write v1/channels/<channel>/manifest.json and manifest.json.sig under DIR, for nginx, a CDN or
    object storage. Manifests past half their lifetime are re-signed first: re-run at least daily
    (cron) so that mirrors never serve an expired manifest."""
    from gestan_release.updates.publisher import local_store

    store = local_store(settings_from(args), args.data)
    written = store.export(args.to, args.channel)
    if not written:
        raise GestanReleaseError(f"nothing to export: no channel published in {store.root}")
    for path in written:
        print(path)
    note(f"pin this public key in the desktop client: {store.signer.public_b64()}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    """create the signing key if missing and print its public key

    Create UPDATES_SIGNING_KEY (mode 0600) if it does not exist, then print the public key that
    desktop installs must pin. An existing key is never replaced."""
    from gestan_release.updates.signing import load_or_create_key, public_key_b64, public_key_pem

    settings = settings_from(args)
    assert settings.updates_signing_key is not None
    key, created = load_or_create_key(settings.updates_signing_key)
    note(f"{'created' if created else 'kept the existing'} key {settings.updates_signing_key}")
    print(public_key_b64(key))
    print(public_key_pem(key), end="")
    return 0
