"""The update-check endpoint: signed per-channel manifests, the server, its publisher and the
reference desktop client.

- `manifest`: pure functions — release entries, canonical JSON, which update an install gets;
- `signing`: Ed25519 keys and signatures;
- `store`: the directory of signed manifests (atomic writes, a lock, a serial that only increases);
- `server`: the ASGI app behind `gestan-release serve-updates`;
- `publisher`: what the release flows call (`publisher_for(settings)`), HTTP or local store;
- `client`: what a desktop install must check before trusting an answer.
"""

from __future__ import annotations

from gestan_release.errors import GestanReleaseError


class UpdatesError(GestanReleaseError):
    """The update endpoint refused something, or was asked something it cannot do."""
