"""A built-in sandbox forum for `gestan-release demo`: a few bug reports answered the way Vanilla's
API v2 answers them, offline.

It is an httpx transport (`httpx.MockTransport`), so the demo runs the real `ForumReader` and the
real sync — paging with `Link` headers, keyset requests, tags, users — without a network or a
server. Only the requests the reader makes are answered; the tests use the contract-validated
`tests/fakes/vanilla_server.py` instead.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import urlencode

BASE_URL = "https://forum.gestan.fr"
TOKEN = "sandbox-token"
CATEGORY = (30, "signaler-un-bug", "Signaler un bug")
TAGS = {41: "flash", 42: "haute", 43: "normale", 44: "basse", 50: "question"}

# (discussion id, title, user id, tags, days before now)
DISCUSSIONS = [
    (3101, "Plantage à l'ouverture d'une facture avec remise", 1, ("flash",), 9),
    (3102, "Export FEC : TVA intracommunautaire absente", 2, ("flash",), 3),
    (3110, "Relances clients : mauvais modèle de mail", 1, ("haute",), 11),
    (3111, "Lenteur de la liste des articles (> 10 000)", 3, ("haute",), 8),
    (3120, "Tri des devis par date de validité", 4, ("normale",), 12),
    (3121, "Libellé tronqué dans l'édition du bon de livraison", 5, ("normale", "question"), 10),
    (3130, "Faute d'orthographe dans le menu « Paramètres »", 6, ("basse",), 13),
    (3131, "Couleur du bouton **Valider** <peu lisible>", 3, ("basse",), 6),
    (3150, "Impression des factures : page blanche", 7, ("haute",), 0.1),
    (3151, "Comment exporter mes devis en PDF ?", 8, (), 1),
    (3152, "GAGNEZ UN IPHONE", 9, ("haute",), 2),
]
USERS = {
    1: ("Zoé Lefèvre", "zoe.lefevre@example.com", 0),
    2: ("Marc Dubois", "marc.dubois@example.com", 0),
    3: ("Chloé Martin", "chloe.martin@example.com", 0),
    4: ("Benoît Girard", "benoit.girard@example.com", 0),
    5: ("Agnès Roux", "agnes.roux@example.com", 0),
    6: ("Hélène Petit", "helene.petit@example.com", 0),
    7: ("Julien Moreau", "julien.moreau@example.com", 0),
    8: ("Léa Bernard", "lea.bernard@example.com", 0),
    9: ("spammeur", "spam@example.com", 1),
}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class SandboxForum:
    """The sandbox's answers; `transport()` plugs it under a `ForumReader`."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC)

    def transport(self) -> Any:
        import httpx

        return httpx.MockTransport(self.handle)

    def _discussion(self, did: int, title: str, uid: int, tags: Any, days: float) -> dict:
        return {
            "discussionID": did,
            "type": "discussion",
            "name": title,
            "body": "Bonjour, voici ce qui se passe…",
            "categoryID": CATEGORY[0],
            "dateInserted": _stamp(self.now - dt.timedelta(days=days)),
            "dateUpdated": None,
            "insertUserID": uid,
            "pinLocation": None,
            "closed": False,
            "sink": False,
            "countComments": 1,
            "countViews": 12,
            "score": None,
            "bookmarked": False,
            "unread": False,
            "attributes": {},
            "url": f"{BASE_URL}/discussion/{did}/{_slug(title)}",
            "tags": [
                {"tagID": tid, "urlcode": name, "name": name}
                for tid, name in TAGS.items()
                if name in tags
            ],
        }

    def handle(self, request: Any) -> Any:
        import httpx

        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"message": "You must sign in.", "status": 401})
        path = request.url.path.removeprefix("/api/v2")
        args = dict(request.url.params)
        body: Any
        headers: dict[str, str] = {}
        if path == "/users/me":
            body = {"userID": 100, "name": "support", "isAdmin": True}
        elif path == "/categories":
            cid, code, name = CATEGORY
            body = (
                [{"categoryID": cid, "urlcode": code, "name": name}]
                if args.get("page", "1") == "1"
                else []
            )
        elif path == "/tags":
            body = (
                [
                    {
                        "tagID": t,
                        "urlcode": n,
                        "name": n,
                        "id": t,
                        "urlCode": n,
                        "parentTagID": None,
                    }
                    for t, n in TAGS.items()
                ]
                if args.get("page", "1") == "1"
                else []
            )
        elif path == "/users":
            ids = {int(x) for x in args.get("userID", "").split(",") if x}
            body = [
                {"userID": uid, "name": name, "email": email, "banned": banned}
                for uid, (name, email, banned) in USERS.items()
                if uid in ids
            ]
        elif path == "/discussions":
            rows = [self._discussion(*d) for d in DISCUSSIONS]
            rows = [r for r in rows if str(r["categoryID"]) == args.get("categoryID")]
            after = args.get("discussionID", ">0").lstrip(">")
            rows = [r for r in rows if r["discussionID"] > int(after or 0)]
            if "dateUpdated" in args:
                rows = [r for r in rows if r["dateUpdated"]]
            limit = int(args.get("limit", 30))
            if len(rows) > limit:
                headers["Link"] = (
                    f"<{BASE_URL}/api/v2/discussions?{urlencode({**args, 'page': '2'})}>; "
                    'rel="next"'
                )
            body = rows[:limit]
        elif m := re.fullmatch(r"/discussions/(\d+)", path):
            found = [d for d in DISCUSSIONS if d[0] == int(m.group(1))]
            if not found:
                return httpx.Response(404, json={"message": "Not found.", "status": 404})
            body = self._discussion(*found[0])
        else:
            return httpx.Response(404, json={"message": "Not found.", "status": 404})
        return httpx.Response(
            200,
            content=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", **headers},
        )
