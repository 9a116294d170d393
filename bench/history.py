#!/usr/bin/env python3
"""Benchmark: reading the tickets fixed in a range of a big git history.

Builds (or reuses) a synthetic repository -- 100,000 commits by default, an annotated release tag
every 2,000 commits, realistic messages (French and English subjects with accents, `#1234` refs,
`Ticket:`/`Fixes:`/`Closes:`/`Corrige:`/`Refs:` trailers, CRLF messages, merges, reverts,
cherry-picks) -- then, in the same run and interleaved, times the whole process of:

  (a) git-log    the raw `git log` that reads the same messages: the floor;
  (b) git-cliff  git-cliff with bench/cliff.toml, which extracts the same ticket refs;
  (c) changelog  `gestan-release changelog --format json`;
  (d) naive      optional reference: GitPython `iter_commits` + a regex, in a subprocess;

on two ranges: one release (between the last two release tags) and the whole history. Reports
medians, the median of the per-round ratios to `git log`, git-cliff's peak memory, a sanity check
of the ticket ids each tool finds, and PASS/FAIL for the targets of issue 8 (the rules of real
histories must not cost):

  - whole history: `changelog` <= 2.3 x raw `git log` (and the aim, 1.5 x, reported);
  - one release:   the whole `changelog` process <= 0.5 s wall;
  - both ranges:   `changelog` ahead of git-cliff.

Only the standard library is needed to generate and time; (d) needs GitPython.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
CLIFF_CONFIG = BENCH_DIR / "cliff.toml"
META_FILE = "gestan-bench.json"  # kept in the generated repository's .git directory
GENERATOR_VERSION = 2  # 2: release commits, sha-less reverts, squashes quoting reverts

TARGET_WHOLE_RATIO = 2.3  # whole history: changelog <= 2.3 x raw git log (issue 8)
AIM_WHOLE_RATIO = 1.5  # ... and the aim (reported, not a failure)
TARGET_RELEASE_WALL = 0.5  # one release: whole changelog process <= 0.5 s

# The `changelog` invocations; {from}, {to}, {root}, {head} are filled in. Adjust here if the
# command's options change (the whole history has no previous tag: the range starts at the root).
CHANGELOG_RELEASE_ARGS = "changelog --format json --from {from} --to {to}"
CHANGELOG_WHOLE_ARGS = "changelog --format json --from {root} --to {head}"

RELEASE_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")  # the release scheme: vMAJOR.MINOR.PATCH

# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

AUTHORS = [
    ("Élodie Lefèvre", "elodie.lefevre@gestan.fr"),
    ("François Müller", "francois.muller@gestan.fr"),
    ("Jérôme Dupré", "jerome.dupre@gestan.fr"),
    ("Benoît Gaëtan", "benoit.gaetan@gestan.fr"),
    ("Zoë Castaño", "zoe.castano@gestan.fr"),
    ("Hélène Marchand", "helene.marchand@gestan.fr"),
    ("Loïc Le Bihan", "loic.lebihan@gestan.fr"),
    ("Cécile Vérité", "cecile.verite@gestan.fr"),
    ("Anaïs Côté", "anais.cote@gestan.fr"),
    ("Søren Ødegård", "soren.odegard@example.dk"),
    ("Mickaël Œuvrard", "mickael.oeuvrard@gestan.fr"),
    ("Ana Núñez", "ana.nunez@example.es"),
    ("Paul Martin", "paul.martin@gestan.fr"),
    ("Sarah O'Connor", "sarah.oconnor@example.ie"),
    ("Thomas Bernard", "thomas.bernard@gestan.fr"),
    ("Maëlys Brûlé", "maelys.brule@gestan.fr"),
    ("Grégoire Ça-Va", "gregoire.cava@gestan.fr"),
    ("Łukasz Wiśniewski", "lukasz.wisniewski@example.pl"),
    ("Nguyễn Thị Hương", "huong.nguyen@example.vn"),
    ("Dev Bot", "ci@gestan.fr"),
]

FR_VERBS = [
    "Corrige",
    "Ajoute",
    "Améliore",
    "Simplifie",
    "Accélère",
    "Sécurise",
    "Répare",
    "Nettoie",
    "Réécrit",
    "Supprime",
    "Déplace",
    "Vérifie",
]
FR_OBJECTS = [
    "le calcul de la TVA sur les avoirs",
    "l'export des écritures comptables",
    "la génération des relevés bancaires",
    "l'impression des factures d'acompte",
    "la synchronisation avec Gestan Cloud",
    "le rapprochement bancaire automatique",
    "l'écran « Rechercher une mise à jour »",
    "les arrondis des remises en pied de facture",
    "la fiche client (champ SIRET)",
    "l'import des tarifs fournisseurs",
    "le module de paie",
    "la relance des impayés",
    "les numéros de pièce en double",
    "le lettrage des comptes",
    "la clôture d'exercice",
    "les échéances de règlement",
    "le tableau de bord des ventes",
]
EN_VERBS = [
    "Fix",
    "Add",
    "Improve",
    "Simplify",
    "Speed up",
    "Harden",
    "Refactor",
    "Remove",
    "Clean up",
    "Rewrite",
    "Handle",
    "Validate",
]
EN_OBJECTS = [
    "VAT rounding on credit notes",
    "accounting entries export",
    "bank statement import",
    "down-payment invoice printing",
    "Cloud sync retries",
    "automatic bank reconciliation",
    "the update check dialog",
    "footer discount rounding",
    "customer form SIRET validation",
    "supplier price list import",
    "payroll module start-up",
    "overdue payment reminders",
    "duplicate document numbers",
    "account matching",
    "fiscal year closing",
    "payment schedule dates",
    "sales dashboard totals",
    "café & crème product names",
]
FR_BODIES = [
    "Le montant était faux quand la remise dépassait 100 €.",
    "Signalé par un utilisateur sur le forum ; reproduit sur la 15.3.",
    "On réutilise le même arrondi que pour les lignes de facture.",
    "Évite une requête par ligne : l'écran s'ouvre maintenant en moins d'une seconde.",
    "Les caractères accentués (é, è, à, ç) étaient perdus à l'export CSV.",
    "Voir aussi https://forum.gestan.fr/discussion/3226/export-csv#latest pour le contexte.",
]
EN_BODIES = [
    "The total was wrong when the discount exceeded 100 EUR.",
    "Reported on the forum; reproduced on 15.3.",
    "Reuse the same rounding as invoice lines.",
    "Avoid one query per line: the screen now opens in under a second.",
    "Accented characters were lost in the CSV export.",
    "HTML entities such as &#233; are now decoded (not a ticket ref).",
]
NOISE_TRAILERS = [
    "Signed-off-by: {name} <{email}>",
    "Co-authored-by: {name} <{email}>",
    "Reviewed-by: {name} <{email}>",
]
FEATURES = [
    "tva-avoirs",
    "export-fec",
    "relances",
    "cloud-sync",
    "paie-2026",
    "tableau-bord",
    "import-tarifs",
    "lettrage",
    "maj-auto",
    "sepa",
]
FIX_TRAILER_NAMES = ["Ticket", "Fixes", "Closes", "Corrige", "ticket", "FIXES", "closes"]
MAX_TICKET = 20000


@dataclass
class _Commit:
    mark: int
    index: int  # 0-based position in generation order
    release: int  # index of the release range it belongs to
    message: str
    kind: str = "normal"  # normal | merge | revert | cherry | feature


@dataclass
class _Gen:
    rng: random.Random
    out: object  # the binary stdin of git fast-import
    replies: object  # its cat-blob-fd (stdout)
    mark: int = 0
    when: int = 1546300800  # 2019-01-01
    commits: list[_Commit] = field(default_factory=list)
    reverted: set[int] = field(default_factory=set)
    sha_cache: dict[int, str] = field(default_factory=dict)

    def sha(self, mark: int) -> str:
        if mark not in self.sha_cache:
            self.out.write(b"get-mark :%d\n" % mark)
            self.out.flush()
            self.sha_cache[mark] = self.replies.readline().decode().strip()
        return self.sha_cache[mark]


def _ticket(rng: random.Random) -> int:
    return rng.randint(1, MAX_TICKET)


def _ids(rng: random.Random, hashed: bool) -> str:
    ids = [_ticket(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
    if hashed:
        return rng.choice((", ", " ", ",")).join(f"#{i}" for i in ids)
    return rng.choice((" ", ", ")).join(str(i) for i in ids)


def _message(rng: random.Random, author: tuple[str, str]) -> str:
    """A realistic commit message (without the cherry-pick / revert specials)."""
    french = rng.random() < 0.55
    verb = rng.choice(FR_VERBS if french else EN_VERBS)
    obj = rng.choice(FR_OBJECTS if french else EN_OBJECTS)
    subject = f"{verb} {obj}"
    r = rng.random()
    if r < 0.18:
        subject += f" (#{_ticket(rng)})"
    elif r < 0.26:
        subject = f"#{_ticket(rng)} {subject}"
    elif r < 0.29:
        subject += f" (ref. issue#{_ticket(rng)})"  # not a ref: preceded by a word character
    if rng.random() < 0.28:  # no body at all
        return subject + "\n"
    paragraphs = [subject]
    body = rng.choice(FR_BODIES if french else EN_BODIES)
    if rng.random() < 0.15:
        body += (" Voir #%d." if french else " See #%d.") % _ticket(rng)
    if rng.random() < 0.5:
        paragraphs.append(body)
    trailers = []
    r = rng.random()
    if r < 0.45:
        name = rng.choice(FIX_TRAILER_NAMES)
        trailers.append(f"{name}: {_ids(rng, hashed=rng.random() < 0.5)}")
        if rng.random() < 0.1:
            trailers.append(f"{rng.choice(FIX_TRAILER_NAMES)}: {_ids(rng, hashed=True)}")
    if rng.random() < 0.08:
        trailers.append(f"{rng.choice(('Refs', 'refs'))}: {_ids(rng, hashed=rng.random() < 0.7)}")
    if rng.random() < 0.15:
        other = rng.choice(AUTHORS)
        trailers.append(rng.choice(NOISE_TRAILERS).format(name=other[0], email=other[1]))
    if trailers:
        paragraphs.append("\n".join(trailers))
    if len(paragraphs) == 1:
        return subject + "\n"
    return "\n\n".join(paragraphs) + "\n"


def _emit_commit(
    g: _Gen,
    branch: str,
    message: str,
    parents: list[int],
    release: int,
    kind: str,
    committer: tuple[str, str] | None = None,
) -> _Commit:
    rng = g.rng
    g.mark += 1
    g.when += rng.randint(60, 5400)
    author = rng.choice(AUTHORS)
    committer = committer or author
    tz = rng.choice((b"+0100", b"+0200", b"+0000", b"-0500"))
    if kind != "merge" and rng.random() < 0.03:
        message = message.replace("\n", "\r\n")  # some tools on Windows
    data = message.encode()
    area = rng.choice(("facturation", "compta", "paie", "crm", "cloud"))
    path = f"src/{area}/m{rng.randrange(40)}.txt"
    blob = f"{g.mark}\n{message[:40]}\n".encode()
    out = bytearray()
    out += b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), g.mark)
    out += b"author %s <%s> %d %s\n" % (author[0].encode(), author[1].encode(), g.when, tz)
    out += b"committer %s <%s> %d %s\n" % (committer[0].encode(), committer[1].encode(), g.when, tz)
    out += b"data %d\n%s\n" % (len(data), data)
    if parents:
        out += b"from :%d\n" % parents[0]
        for p in parents[1:]:
            out += b"merge :%d\n" % p
    out += b"M 100644 inline %s\ndata %d\n%s\n\n" % (path.encode(), len(blob), blob)
    g.out.write(out)
    c = _Commit(g.mark, len(g.commits), release, message, kind)
    g.commits.append(c)
    return c


def _tag(g: _Gen, name: str, mark: int, message: str) -> None:
    data = message.encode()
    tagger = g.rng.choice(AUTHORS)
    g.out.write(
        b"tag %s\nfrom :%d\ntagger %s <%s> %d +0100\ndata %d\n%s\n"
        % (name.encode(), mark, tagger[0].encode(), tagger[1].encode(), g.when, len(data), data)
    )


def _pick_target(g: _Gen, release_start: int, same_range: bool) -> _Commit | None:
    lo, hi = (release_start, len(g.commits)) if same_range else (0, release_start)
    for _ in range(20):
        if hi <= lo:
            return None
        c = g.commits[g.rng.randrange(lo, hi)]
        if c.kind in ("normal", "feature") and c.mark not in g.reverted:
            return c
    return None


def generate(repo: Path, commits: int, tag_every: int, seed: int) -> dict:
    """Write a synthetic history into a new repository at `repo` with one `git fast-import`."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*git, "fast-import", "--quiet", "--cat-blob-fd=1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    g = _Gen(random.Random(seed), proc.stdin, proc.stdout)
    rng = g.rng
    g.out.write(b"feature get-mark\nfeature done\n")
    head: int | None = None
    release = 0
    release_start = 0
    tags: list[str] = []
    minor = 0
    feature_n = 0
    counts = {
        "merge": 0,
        "revert": 0,
        "revert_older": 0,
        "revert_no_sha": 0,
        "squash_quoting_revert": 0,
        "cherry": 0,
        "release_commit": 0,
    }
    while len(g.commits) < commits:
        parents = [head] if head else []
        r = rng.random()
        left = commits - len(g.commits)
        if head and r < 0.004 and left > 4:  # a feature branch of 2-3 commits, merged back
            feature_n += 1
            branch = f"feature/{rng.choice(FEATURES)}-{feature_n}"
            fhead = head
            for _ in range(rng.randint(2, 3)):
                author = rng.choice(AUTHORS)
                fhead = _emit_commit(
                    g, branch, _message(rng, author), [fhead], release, "feature"
                ).mark
            msg = f"Merge branch '{branch}'"
            if rng.random() < 0.7:
                msg += f"\n\nTicket: {_ids(rng, hashed=rng.random() < 0.5)}\n"
            else:
                msg += " into main\n"
            head = _emit_commit(g, "main", msg, [head, fhead], release, "merge").mark
            counts["merge"] += 1
        elif head and r < 0.016:  # revert: mostly of the same release range, some older
            same = rng.random() < 0.7 or release == 0
            target = _pick_target(g, release_start, same)
            if target is None:
                continue
            subject = target.message.replace("\r\n", "\n").split("\n", 1)[0]
            msg = f'Revert "{subject}"\n\nThis reverts commit {g.sha(target.mark)}.\n'
            g.reverted.add(target.mark)
            head = _emit_commit(g, "main", msg, parents, release, "revert").mark
            counts["revert"] += 1
            counts["revert_older"] += not same
        elif head and r < 0.018:  # GitHub's squash of a revert PR: no sha, subject quoted
            target = _pick_target(g, release_start, True)
            if target is None:
                continue
            subject = target.message.replace("\r\n", "\n").split("\n", 1)[0]
            pr = _ticket(rng)
            msg = f'Revert "{subject}" (#{pr})\n\nReverts gestan/erp#{pr}\n'
            g.reverted.add(target.mark)
            head = _emit_commit(g, "main", msg, parents, release, "revert").mark
            counts["revert_no_sha"] += 1
        elif head and r < 0.020:  # a squash whose body quotes a revert of one of its commits
            target = _pick_target(g, release_start, True)
            if target is None:
                continue
            author = rng.choice(AUTHORS)
            subject, _, rest = _message(rng, author).partition("\n")
            quoted = target.message.replace("\r\n", "\n").split("\n", 1)[0]
            msg = (
                f'{subject}\n\n* {quoted}\n\n* Revert "{quoted}"\n\n'
                f"This reverts commit {g.sha(target.mark)}.\n{rest}"
            )
            head = _emit_commit(g, "main", msg, parents, release, "normal").mark
            counts["squash_quoting_revert"] += 1
        elif head and r < 0.030:  # cherry-pick (-x) of an earlier commit
            target = _pick_target(g, release_start, rng.random() < 0.6 or release == 0)
            if target is None:
                continue
            msg = target.message.replace("\r\n", "\n").rstrip("\n")
            last = msg.rsplit("\n\n", 1)[-1]
            ends_with_trailers = "\n\n" in msg and all(
                re.match(r"^[\w-]+: ", line) for line in last.splitlines()
            )
            sep = "\n" if ends_with_trailers else "\n\n"
            msg += f"{sep}(cherry picked from commit {g.sha(target.mark)})\n"
            head = _emit_commit(
                g, "main", msg, parents, release, "cherry", committer=rng.choice(AUTHORS)
            ).mark
            counts["cherry"] += 1
        else:
            author = rng.choice(AUTHORS)
            head = _emit_commit(g, "main", _message(rng, author), parents, release, "normal").mark
        if len(g.commits) >= (release + 1) * tag_every - 1:
            # The release commit quotes the notes (the previous release's, too, as such commits
            # often do): it fixes nothing.
            notes = "".join(f"- #{_ticket(rng)} {rng.choice(FR_OBJECTS)}\n" for _ in range(25))
            msg = f"Version 1.{minor} (1.{minor}.0)\n\n## Tickets corrigés\n\n{notes}"
            head = _emit_commit(g, "main", msg, [head], release, "release").mark
            counts["release_commit"] += 1
            name = f"v1.{minor}.0"
            _tag(g, name, head, f"Gestan 1.{minor}\n\nVersion 1.{minor} « stable ».\n")
            tags.append(name)
            minor += 1
            release += 1
            release_start = len(g.commits)
        elif len(g.commits) == release_start + tag_every // 2:
            # noise tags inside a range, outside the release scheme: must be ignored
            if release % 5 == 0:
                g.out.write(b"reset refs/tags/build-%d\nfrom :%d\n\n" % (g.mark, head))
            if release % 7 == 3:
                _tag(g, f"v1.{minor}.0-nightly.2026{release % 12 + 1:02d}15", head, "nightly\n")
            if release % 11 == 6:
                _tag(g, f"release-{2019 + release // 10}-{release}", head, "old scheme\n")
    # a nightly of the next version in the last range, and one of a far-away version at HEAD
    if len(g.commits) > tag_every // 2:
        mid = g.commits[len(g.commits) - tag_every // 2 - 1]
        _tag(g, f"v1.{mid.release}.0-nightly.20261127", mid.mark, "nightly\n")
    _tag(g, "v2.0.0-nightly.20261127", head, "nightly of 2.0\n")
    g.out.write(b"reset refs/tags/build-123\nfrom :%d\n\n" % head)
    g.out.write(b"done\n")
    g.out.close()
    proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run([*git, "checkout", "-q", "-f", "main"], check=True)
    meta = {
        "generator": GENERATOR_VERSION,
        "commits": len(g.commits),
        "tag_every": tag_every,
        "seed": seed,
        "tags": tags,
        "counts": counts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (repo / ".git" / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def ensure_repo(args: argparse.Namespace) -> tuple[Path, dict | None]:
    """The repository to measure: reuse it when it is there (and fits), else generate it."""
    repo = Path(args.repo).resolve()
    meta_path = repo / ".git" / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    wanted = {
        "generator": GENERATOR_VERSION,
        "commits": args.commits,
        "tag_every": args.tag_every,
        "seed": args.seed,
    }
    if (repo / ".git").is_dir() and not args.regenerate:
        if meta is None:
            print(f"reusing {repo} (not generated by this script: measured as it is)")
            return repo, None
        if all(meta.get(k) == v for k, v in wanted.items()):
            print(f"reusing {repo} ({meta['commits']} commits, generated in {meta['seconds']} s)")
            return repo, meta
        if args.repo_given:
            raise SystemExit(
                f"{repo} was generated with other options ({ {k: meta.get(k) for k in wanted} }); "
                "pass --regenerate to rebuild it"
            )
        print(f"{repo} was generated with other options: regenerating")
    elif repo.exists() and not (repo / ".git").is_dir() and any(repo.iterdir()):
        raise SystemExit(f"{repo} exists and is not a git repository; refusing to overwrite it")
    print(f"generating {args.commits} commits in {repo} (tag every {args.tag_every}) ...", end="")
    sys.stdout.flush()
    meta = generate(repo, args.commits, args.tag_every, args.seed)
    print(f" {meta['seconds']} s; {meta['counts']}")
    return repo, meta


# ---------------------------------------------------------------------------------------------
# Reference reading of the rules (issues 2 and 8), for the sanity check only: plain and slow,
# written apart from gestan_release so that the two can disagree
# ---------------------------------------------------------------------------------------------

HASH_REF = re.compile(r"(?<![\w&/])#(\d+)\b")
TRAILER = re.compile(r"^[ \t]*(ticket|fixes|closes|corrige|refs)[ \t]*:(.*)$", re.I | re.M)
REFS_LINE = re.compile(r"^[ \t]*refs[ \t]*:.*$", re.I | re.M)
TRAILER_ID = re.compile(r"#?(\d+)\b")
REVERT_SUBJECT = re.compile(r'^Revert "(.*)"$')
REVERTS_SHA = re.compile(r"This reverts commit ([0-9a-f]{40})")
CHERRY = re.compile(r"\(cherry picked from commit ([0-9a-f]{40})\)")
RELEASE_SUBJECT = re.compile(r"^Version \d+\.\d+")  # the only release commits generated
PR = re.compile(r" \(#\d+\)$")
LOG_FORMAT = "--format=%H%x1f%P%x1f%an%x1f%B"  # changelog reads %n%B: one byte more a commit


def _raw_fix_ids(message: str, merge: bool) -> set[int]:
    ids = set()
    for m in TRAILER.finditer(message):
        if m.group(1).lower() != "refs":
            ids.update(int(x) for x in TRAILER_ID.findall(m.group(2)))
    if not merge:
        ids.update(int(x) for x in HASH_REF.findall(REFS_LINE.sub("", message)))
    return ids


def reference(repo: Path, rev: list[str]) -> dict:
    """Raw (commit, ticket) fix refs and the tickets fixed once the rules are applied: release
    commits skipped, reverts by subject (by sha, else the newest earlier commit with the quoted
    subject), a revert cancels its target and the cherry-picks of the same original."""
    out = subprocess.run(
        ["git", "log", LOG_FORMAT, "-z", *rev], cwd=repo, capture_output=True, check=True
    ).stdout.decode()
    commits = []
    for record in out.split("\0"):
        if not record:
            continue
        sha, parents, _author, message = record.split("\x1f", 3)
        message = message.replace("\r\n", "\n")
        commits.append((sha.lstrip("\n"), len(parents.split()) > 1, message))
    in_range = {sha for sha, _, _ in commits}
    kept = [(merge, m) for _, merge, m in commits if not RELEASE_SUBJECT.match(m)]
    raw_pairs = sum(len(_raw_fix_ids(m, merge)) for merge, m in kept)
    cliff_pairs = sum(len(_raw_fix_ids(m, False)) for _, m in kept)  # git-cliff reads merges whole
    cancelled: dict[str, str] = {}  # sha or original -> the revert that cancels it
    waiting: dict[str, list[str]] = {}  # quoted subject -> sha-less reverts, nearest last
    fixed: set[int] = set()
    reverted_older = 0
    for sha, merge, message in commits:  # newest first
        subject = message.split("\n", 1)[0]
        origin = m.group(1) if (m := CHERRY.search(message)) else sha
        quoted_by = waiting.get(PR.sub("", subject))  # the nearest newer one quoting it first
        canceller = quoted_by.pop() if quoted_by else cancelled.get(sha) or cancelled.get(origin)
        if RELEASE_SUBJECT.match(subject):
            continue
        if canceller is not None:
            cancelled.setdefault(origin, canceller)
            continue
        revert = REVERT_SUBJECT.match(PR.sub("", subject))
        if revert:
            target = REVERTS_SHA.search(message)
            if target:
                cancelled[target.group(1)] = sha
                reverted_older += target.group(1) not in in_range
            else:
                waiting.setdefault(PR.sub("", revert.group(1)), []).append(sha)
            continue
        fixed |= _raw_fix_ids(message, merge)
    reverted_older += sum(len(v) for v in waiting.values())  # quoting nothing in the range
    return {
        "commits": len(commits),
        "raw_pairs": raw_pairs,
        "cliff_pairs": cliff_pairs,
        "fixed": fixed,
        "reverted_older": reverted_older,
    }


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------

NAIVE_SCRIPT = r"""
import re, sys
import git
HASH = re.compile(r"(?<![\w&/])#(\d+)\b")
TRAILER = re.compile(r"^[ \t]*(ticket|fixes|closes|corrige)[ \t]*:(.*)$", re.I | re.M)
ids = set()
for c in git.Repo(sys.argv[1]).iter_commits(sys.argv[2]):
    message, author = c.message, c.author.name
    ids.update(HASH.findall(message))
    for m in TRAILER.finditer(message):
        ids.update(re.findall(r"\d+", m.group(2)))
print(len(ids))
"""


@dataclass
class Tool:
    key: str
    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] | None = None
    timeout: float | None = None
    max_runs: int | None = None
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system, the process and its children
    rss_kib: list[int] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    skipped: str | None = None


def run_timed(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> tuple[float, float, int]:
    """Wall time, CPU time and peak RSS (KiB) of one whole process; stdout to /dev/null."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise TimeoutError
            time.sleep(0.005)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {' | '.join(msg)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def measure(tools: list[Tool], runs: int, warmup: bool) -> None:
    """Interleaved rounds (a, b, c, d, a, b, c, d, ...); ratios to tools[0] taken per round."""
    if warmup:  # page cache, the tool's state directory; git-cliff is too slow to warm twice
        for t in tools:
            if t.key in ("git-log", "changelog") and not t.skipped:
                try:
                    run_timed(t.argv, t.cwd, t.env, t.timeout)
                except (RuntimeError, TimeoutError) as exc:
                    t.skipped = str(exc)
    for r in range(runs):
        base = base_cpu = None
        for t in tools:
            if t.skipped or (t.max_runs is not None and len(t.times) >= t.max_runs):
                continue
            try:
                wall, cpu, rss = run_timed(t.argv, t.cwd, t.env, t.timeout)
            except TimeoutError:
                t.skipped = f"skipped: over {t.timeout:.0f} s"
                continue
            except RuntimeError as exc:
                t.skipped = f"failed: {exc}"
                continue
            t.times.append(wall)
            t.cpu.append(cpu)
            t.rss_kib.append(rss)
            if base is None:
                base, base_cpu = wall, cpu
            t.ratios.append(wall / base)
            t.cpu_ratios.append(cpu / base_cpu if base_cpu else float("nan"))
            print(
                f"  round {r + 1}/{runs}  {t.label:<11} {wall:8.3f} s wall {cpu:8.3f} s cpu"
                f" {rss / 1024:7.0f} MiB"
            )
        sys.stdout.flush()


def summary(tools: list[Tool]) -> list[dict]:
    rows = []
    for t in tools:
        row = {"tool": t.key, "argv": t.argv, "runs": len(t.times), "skipped": t.skipped}
        if t.times:
            row.update(
                median_s=statistics.median(t.times),
                min_s=min(t.times),
                max_s=max(t.times),
                ratio_to_git_log=statistics.median(t.ratios),
                median_cpu_s=statistics.median(t.cpu),
                cpu_ratio_to_git_log=statistics.median(t.cpu_ratios),
                peak_rss_mib=max(t.rss_kib) / 1024,
                times_s=t.times,
                cpu_s=t.cpu,
            )
        rows.append(row)
    return rows


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def release_tags(repo: Path) -> list[str]:
    """The release tags (vX.Y.Z) reachable from HEAD, oldest first."""
    tags = _git(repo, "tag", "--merged", "HEAD").split()
    found = [(tuple(int(x) for x in m.groups()), t) for t in tags if (m := RELEASE_TAG.match(t))]
    return [t for _, t in sorted(found)]


def changelog_command() -> list[str]:
    script = Path(sys.executable).parent / "gestan-release"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "gestan_release.cli"]


def changelog_available(cmd: list[str]) -> str | None:
    """None when `changelog` can be run, else why not."""
    try:
        proc = subprocess.run([*cmd, "changelog", "--help"], capture_output=True, text=True)
    except OSError as exc:
        return str(exc)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return None


def sanity(repo: Path, rng: tuple[str, str], cliff: Tool | None, changelog: Tool | None) -> dict:
    """Ticket ids found by each tool on the one-release range, next to the reference rules."""
    ref = reference(repo, [f"{rng[0]}..{rng[1]}"])
    result: dict = {
        "commits": ref["commits"],
        "reference": {
            "refs": ref["cliff_pairs"],
            "refs_merge_rule": ref["raw_pairs"],
            "fixed": len(ref["fixed"]),
            "reverted": ref["reverted_older"],
        },
    }
    if cliff and not (cliff.skipped and cliff.skipped.startswith("failed")):
        out = subprocess.run(cliff.argv, cwd=cliff.cwd, capture_output=True, text=True).stdout
        pairs, commits = 0, 0
        for line in out.splitlines():
            words = line.split()
            if words and re.fullmatch(r"[0-9a-f]{40}", words[0]):
                commits += 1
                pairs += len(set(words[1:]))
        result["git-cliff"] = {"commits": commits, "refs": pairs}
    if changelog and not changelog.skipped:
        proc = subprocess.run(
            changelog.argv, cwd=changelog.cwd, env=changelog.env, capture_output=True, text=True
        )
        try:
            data = json.loads(proc.stdout)
            ids = {t["id"] for t in data.get("tickets", [])} | set(data.get("unknown", []))
            result["changelog"] = {
                "fixed": len(ids),
                "reverted": len(data.get("reverted", [])),
                "missing": sorted(ref["fixed"] - ids)[:10],
                "extra": sorted(ids - ref["fixed"])[:10],
            }
        except (ValueError, KeyError, TypeError) as exc:
            result["changelog"] = {"error": f"unreadable output: {exc}"}
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/history.py",
        description=(
            "Benchmark reading the tickets fixed in a range of a big git history: raw `git log` "
            "(the floor) vs git-cliff vs `gestan-release changelog --format json` (vs a naive "
            "GitPython iter_commits loop), on one release and on the whole history of a synthetic "
            "repository generated with git fast-import."
        ),
        epilog=(
            f"Targets (issue 8): whole history, changelog <= {TARGET_WHOLE_RATIO} x raw git log "
            f"(aim {AIM_WHOLE_RATIO} x) "
            f"(median of per-round ratios); one release, the whole changelog process <= "
            f"{TARGET_RELEASE_WALL} s wall (median); on both, changelog ahead of git-cliff. "
            "Exit status 1 if a target fails."
        ),
    )
    parser.add_argument(
        "--commits",
        type=int,
        default=None,
        help="commits to generate (default: 100000, 20000 with --quick)",
    )
    parser.add_argument(
        "--tag-every",
        type=int,
        default=2000,
        help="a release tag v1.N.0 every so many commits (default: %(default)s)",
    )
    parser.add_argument(
        "--repo",
        metavar="PATH",
        default=None,
        help="repository to reuse or generate (default: bench/data/history-repo "
        "for 100000 commits, bench/data/history-repo-N otherwise)",
    )
    parser.add_argument(
        "--regenerate", action="store_true", help="rebuild the repository even if it exists"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=20261127,
        help="random seed of the generator (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="timed rounds per range (default: 5, 3 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 20000 commits and 3 rounds unless given"
    )
    parser.add_argument(
        "--only", choices=("release", "whole"), default=None, help="measure one range only"
    )
    parser.add_argument("--skip-cliff", action="store_true", help="do not run git-cliff")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        default=None,
        help="also time `changelog` from another checkout of gestan-release (its root "
        "directory, e.g. a worktree of main), side by side: the cost of a change",
    )
    parser.add_argument(
        "--cliff-runs",
        type=int,
        default=None,
        metavar="N",
        help="run git-cliff on the whole history in the first N rounds only (it takes minutes "
        "and GiBs there; default: every round)",
    )
    parser.add_argument(
        "--skip-naive",
        action="store_true",
        help="do not run the naive GitPython iter_commits reference",
    )
    parser.add_argument(
        "--naive-timeout",
        type=float,
        default=60.0,
        help="drop the naive reference for a range once a run takes longer than so many "
        "seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="generate (or check) the repository and stop"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="also write the results as JSON to FILE ('-' for stdout)",
    )

    args = parser.parse_args(argv)
    args.commits = args.commits or (20000 if args.quick else 100000)
    args.runs = args.runs or (3 if args.quick else 5)
    args.repo_given = args.repo is not None
    if args.repo is None:
        name = "history-repo" if args.commits == 100000 else f"history-repo-{args.commits}"
        args.repo = str(DATA_DIR / name)
    if args.commits < 2 * args.tag_every:
        parser.error("--commits must be at least twice --tag-every (two release tags)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo, meta = ensure_repo(args)
    if args.generate_only:
        return 0
    tags = release_tags(repo)
    if len(tags) < 2:
        raise SystemExit(f"{repo}: fewer than two release tags (vX.Y.Z) reachable from HEAD")
    release = (tags[-2], tags[-1])
    root = _git(repo, "rev-list", "--max-parents=0", "HEAD").split()[0]
    head = _git(repo, "rev-parse", "HEAD")
    total = int(_git(repo, "rev-list", "--count", "HEAD"))
    in_release = int(_git(repo, "rev-list", "--count", f"{release[0]}..{release[1]}"))
    cliff_bin = shutil.which(
        "git-cliff", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    cliff_version = None
    if cliff_bin and not args.skip_cliff:
        cliff_version = subprocess.run(
            [cliff_bin, "--version"], capture_output=True, text=True
        ).stdout.strip()
    gr = changelog_command()
    gr_missing = changelog_available(gr)
    state = tempfile.mkdtemp(prefix="gestan-bench-state-")
    env = {**os.environ, "GESTAN_RELEASE_STATE_DIR": state}
    git_version = _git(repo, "version")
    print(f"repository: {repo}  ({total} commits on HEAD; {git_version}; {cliff_version})")
    print(
        f"one release: {release[0]}..{release[1]} ({in_release} commits); whole history: "
        f"{total} commits"
    )
    if gr_missing:
        print(f"changelog: not measured ({gr_missing})")
    results: dict = {
        "repo": str(repo),
        "generated": meta,
        "commits": total,
        "git": git_version,
        "git_cliff": cliff_version,
        "python": sys.version.split()[0],
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "ranges": {},
    }
    ranges = []
    if args.only in (None, "release"):
        ranges.append(("release", f"one release {release[0]}..{release[1]}", release))
    if args.only in (None, "whole"):
        ranges.append(("whole", "whole history", None))
    fill = {"root": root, "head": head}
    verdicts = []
    for key, title, rng in ranges:
        spec = f"{rng[0]}..{rng[1]}" if rng else "HEAD"
        tools = [Tool("git-log", "git log", ["git", "log", LOG_FORMAT, "-z", spec], repo)]
        if cliff_bin and not args.skip_cliff:
            cargv = [cliff_bin, "--config", str(CLIFF_CONFIG)] + ([spec] if rng else [])
            cap = args.cliff_runs if not rng else None
            tools.append(Tool("git-cliff", "git-cliff", cargv, repo, max_runs=cap))
        if not gr_missing:
            tmpl = CHANGELOG_RELEASE_ARGS if rng else CHANGELOG_WHOLE_ARGS
            values = {**fill, "from": rng[0], "to": rng[1]} if rng else fill
            gargv = gr + [w.format(**values) for w in tmpl.split()]
            tools.append(Tool("changelog", "changelog", gargv, repo, env))
            if args.baseline:
                # The same command from another checkout (e.g. main before a change), side by
                # side in the same rounds: "does the change cost?" without the machine's noise.
                base_env = {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}
                bargv = [sys.executable, "-m", "gestan_release.cli", *gargv[len(gr) :]]
                tools.append(Tool("baseline", "baseline", bargv, repo, base_env))
        if not args.skip_naive:
            nargv = [sys.executable, "-c", NAIVE_SCRIPT, str(repo), spec]
            tools.append(Tool("naive", "naive", nargv, repo, timeout=args.naive_timeout))
        print(f"\n{title}: {args.runs} interleaved rounds")
        measure(tools, args.runs, warmup=True)
        rows = summary(tools)
        entry = {"spec": spec, "tools": rows}
        if rng:
            tool = {t.key: t for t in tools}
            entry["sanity"] = sanity(repo, rng, tool.get("git-cliff"), tool.get("changelog"))
        results["ranges"][key] = entry
        by = {t.key: t for t in tools}
        cl = by.get("changelog")
        if key == "whole":
            ok = bool(cl and cl.ratios) and statistics.median(cl.ratios) <= TARGET_WHOLE_RATIO
            got = f"{statistics.median(cl.ratios):.2f}x" if cl and cl.ratios else "not measured"
            verdicts.append(
                (f"whole history: changelog <= {TARGET_WHOLE_RATIO} x git log", got, ok)
            )
            aim = bool(cl and cl.ratios) and statistics.median(cl.ratios) <= AIM_WHOLE_RATIO
            results["aim"] = {"target": f"changelog <= {AIM_WHOLE_RATIO} x git log", "met": aim}
        else:
            ok = bool(cl and cl.times) and statistics.median(cl.times) <= TARGET_RELEASE_WALL
            got = f"{statistics.median(cl.times):.3f} s" if cl and cl.times else "not measured"
            verdicts.append((f"one release: changelog <= {TARGET_RELEASE_WALL} s wall", got, ok))
        base = by.get("baseline")
        if cl and cl.ratios and base and base.ratios:
            results.setdefault("vs_baseline", {})[key] = {
                "changelog_x_git_log": statistics.median(cl.ratios),
                "baseline_x_git_log": statistics.median(base.ratios),
                "cpu_changelog_x_git_log": statistics.median(cl.cpu_ratios),
                "cpu_baseline_x_git_log": statistics.median(base.cpu_ratios),
            }
        cliff = by.get("git-cliff")
        if cl and cl.times and cliff and cliff.times:
            ahead = statistics.median(cl.times) < statistics.median(cliff.times)
            got = (
                f"{statistics.median(cl.times):.3f} s vs {statistics.median(cliff.times):.3f} s "
                f"({statistics.median(cliff.times) / statistics.median(cl.times):.1f}x faster)"
            )
            verdicts.append((f"{key}: changelog ahead of git-cliff", got, ahead))
    report(results, verdicts)
    for key, v in results.get("vs_baseline", {}).items():
        print(
            f"INFO  {key}: changelog {v['changelog_x_git_log']:.2f}x git log (cpu "
            f"{v['cpu_changelog_x_git_log']:.2f}x), baseline {v['baseline_x_git_log']:.2f}x "
            f"(cpu {v['cpu_baseline_x_git_log']:.2f}x), same rounds"
        )
    if "aim" in results:
        met = "met" if results["aim"]["met"] else "not met"
        print(f"AIM   whole history: {results['aim']['target']}: {met}")
    results["targets"] = [{"target": t, "measured": m, "pass": ok} for t, m, ok in verdicts]
    if args.json:
        text = json.dumps(results, indent=2, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    shutil.rmtree(state, ignore_errors=True)
    return 0 if all(ok for _, _, ok in verdicts) else 1


def report(results: dict, verdicts: list[tuple[str, str, bool]]) -> None:
    print(
        f"\n{'range':<8} {'tool':<10} {'median s':>9} {'x git log':>10} {'cpu s':>8}"
        f" {'cpu x':>7} {'peak MiB':>9} {'runs':>5}"
    )
    for key, entry in results["ranges"].items():
        for row in entry["tools"]:
            if "median_s" in row:
                print(
                    f"{key:<8} {row['tool']:<10} {row['median_s']:9.3f} "
                    f"{row['ratio_to_git_log']:9.2f}x {row['median_cpu_s']:8.3f} "
                    f"{row['cpu_ratio_to_git_log']:6.2f}x {row['peak_rss_mib']:9.0f}"
                    f" {row['runs']:5}"
                )
            if row["skipped"]:
                print(f"{key:<8} {row['tool']:<10} {row['skipped']}")
    s = results["ranges"].get("release", {}).get("sanity")
    if s:
        ref = s["reference"]
        print(f"\nsanity, one release ({s['commits']} commits): ticket refs (commit, id) found")
        print(
            f"  reference rules, raw:   {ref['refs']:6} refs   (merge messages: trailers only:"
            f" {ref['refs_merge_rule']})"
        )
        if "git-cliff" in s:
            c = s["git-cliff"]
            same = "same" if c["refs"] == ref["refs"] else "DIFFERENT"
            print(
                f"  git-cliff, raw:         {c['refs']:6} refs   ({c['commits']} commits; {same})"
            )
        print(
            f"  reference, fixed ids:   {ref['fixed']:6} tickets, {ref['reverted']} reverted "
            "older commits (reverts applied)"
        )
        if "changelog" in s:
            c = s["changelog"]
            if "error" in c:
                print(f"  changelog:              {c['error']}")
            else:
                same = (
                    "same"
                    if not c["missing"] and not c["extra"]
                    else (f"DIFFERENT: missing {c['missing']} extra {c['extra']}")
                )
                print(
                    f"  changelog, fixed ids:   {c['fixed']:6} tickets, {c['reverted']} reverted"
                    f" ({same})"
                )
    print()
    for target, got, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {target}: {got}")


if __name__ == "__main__":
    sys.exit(main())
