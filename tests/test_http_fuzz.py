"""Hostile HTTP through gunicorn: no request answers 500, hangs, or takes a worker down.

Requests go byte for byte over raw sockets to gunicorn started with gunicorn.conf.py, to
every route of the app's url_map (path variables filled with a real task id and with junk,
so a route added later is probed too). Each kind of hostility has its list of variants; a
seeded random draw picks a few of each kind for every path, so a run is the same every time
and its size is bounded. The server sits behind one trusted proxy, so X-Forwarded-* headers
reach the app rather than being dropped.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from conftest import make_app
from server_support import Answer, Server, exchange, real_values

SEED = 13
VARIANTS_PER_KIND = 5
JUNK_FILLS_PER_RULE = 3
CLIENTS = 4
ANSWER_SECONDS = 5.0
SENDING_BUDGET_SECONDS = 35.0
ALLOWED = {"127.0.0.1", "localhost"}
HOST = b"127.0.0.1"
PROBLEM_OR_PAGE = ("application/problem+json", "text/html")
# A request the app cannot serve may be refused in many ways; only these are failures.
NOT_IMPLEMENTED = 501

# What a path variable holds when it is not a real value.
JUNK_FILLS = [
    b"%00",
    b"%ff%fe",
    b"%c0%af",
    b"..%2f..%2fetc%2fpasswd",
    b"%",
    b"%zz",
    b"a" * 3000,
    b"%e2%80%ae",
    b"x%0d%0aSet-Cookie:%20a=b",
]

Build = Callable[[bytes], list[bytes]]


def request(
    target: bytes,
    method: bytes = b"GET",
    version: bytes = b"HTTP/1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes | None = HOST,
    body: bytes = b"",
) -> bytes:
    """One request as bytes: request line, Host (unless None), headers, Connection: close."""
    lines = [method + b" " + target + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [name + b": " + value for name, value in headers or []]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def with_header(name: bytes, values: list[bytes]) -> Build:
    """A kind that sends one header with each of `values`."""
    return lambda path: [request(path, headers=[(name, value)]) for value in values]


def query(path: bytes, text: bytes) -> bytes:
    """`path` with `text` appended to its query string."""
    return path + (b"&" if b"?" in path else b"?") + text


KINDS: dict[str, Build] = {
    "plain GET": lambda p: [
        request(p, headers=[(b"Accept", b"text/html")]),
        request(p, headers=[(b"Accept", b"application/json")]),
    ],
    "odd method": lambda p: (
        [
            request(p, method=m)
            for m in (
                b"get",
                b"Get",
                b"FOO",
                b"TRACE",
                b"CONNECT",
                b"OPTIONS",
                b"HEAD",
                b"POST",
                b"PUT",
                b"DELETE",
                b"PATCH",
                b"PROPFIND",
                b"M-SEARCH",
            )
        ]
        + [b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"]
    ),
    "malformed request line": lambda p: [
        b"GET\r\n\r\n",
        b"GET " + p + b"\r\n\r\n",
        b"GET  " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET " + p + b" HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET " + p + b" HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET " + p + b" HTTP/1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET " + p + b" http/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET\t" + p + b"\tHTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b" GET " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET " + p + b" HTTP/1.1\nHost: 127.0.0.1\n\n",
        b"\r\n\r\nGET " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        request(b"http://evil.example" + p),
        request(b"http://127.0.0.1" + p),
        request(b"*"),
        request(p + b"#fragment"),
        request(b"//evil.example" + p),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
    ],
    "HTTP/1.0": lambda p: [
        request(p, version=b"HTTP/1.0", host=None),
        request(p, version=b"HTTP/1.0"),
        request(p, version=b"HTTP/1.0", headers=[(b"Connection", b"keep-alive")]),
        request(p, version=b"HTTP/0.9", host=None),
    ],
    "HTTP/2": lambda p: [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        request(
            p,
            headers=[
                (b"Upgrade", b"h2c"),
                (b"HTTP2-Settings", b"AAMAAABkAARAAAAAAAIAAAAA"),
                (b"Connection", b"Upgrade, HTTP2-Settings"),
            ],
        ),
        request(p, version=b"HTTP/2.0"),
        request(p, headers=[(b":authority", b"127.0.0.1")]),
    ],
    "duplicated header": lambda p: [
        request(p, headers=[(b"Host", b"127.0.0.1")]),
        request(p, headers=[(b"Host", b"evil.example")]),
        request(p, headers=[(b"Content-Length", b"0"), (b"Content-Length", b"5")], body=b"hello"),
        request(
            p, headers=[(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")], body=b"0"
        ),
        request(p, headers=[(b"Accept", b"text/html"), (b"Accept", b"application/json")]),
        request(p, headers=[(b"HX-Request", b"true"), (b"HX-Request", b"false")]),
        request(p, headers=[(b"X-Forwarded-Host", b"localhost"), (b"X-Forwarded-Host", b"e.x")]),
        request(p, headers=[(b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Proto", b"http")]),
        request(p, headers=[(b"Cookie", b"a=1"), (b"Cookie", b"a=2")]),
    ],
    "oversized": lambda p: [
        request(p, headers=[(b"X-Junk", b"a" * 40_000)]),
        request(p, headers=[(b"X-Junk", b"a" * 20_000)]),
        request(p, headers=[(b"X-Junk-%d" % i, b"a") for i in range(150)]),
        request(p, headers=[(b"Cookie", b"; ".join(b"c%d=%d" % (i, i) for i in range(2000)))]),
        request(query(p, b"tag=" + b"%F0%9F%98%80" * 4000)),
        request(query(p, b"x=" + b"a" * 70_000)),
        request(p, headers=[(b"Accept", b"text/html;q=0.1, " * 2000)]),
        request(p, headers=[(b"HX-Current-URL", b"http://127.0.0.1/?" + b"tag=a&" * 5000)]),
    ],
    "Host": lambda p: [
        request(p, host=host)
        for host in (
            b"a" * 70,
            b"a" * 300,
            b"a" * 63 + b"." + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 63,
            b"a..b",
            b".",
            b"xn--zz",
            b"xn--",
            b"xn--ls8h.example",
            b"-bad-.example",
            "é.example".encode(),
            b"\xff\xfe",
            b"[::1",
            b"[::1]:99999",
            b"127.0.0.1:0",
            b"127.0.0.1:abc",
            b"127.0.0.1:99999999999",
            b"",
            b"evil.example",
            b"localhost.",
            b"LOCALHOST",
            b"127.0.0.1:80",
            b"user@127.0.0.1",
            b"127.0.0.1/x",
            b"127.0.0.1%00",
            b"127.0.0.1\x00",
        )
    ],
    "percent-escape": lambda p: [
        p + b"%",
        p + b"%zz",
        p + b"%f",
        p + b"%00",
        p + b"%2e%2e%2f",
        query(p, b"tag=%"),
        query(p, b"tag=%zz"),
        query(p, b"%zz=1"),
        query(p, b"tag=%ff%fe"),
        query(p, b"status=%00"),
        query(p, b"created_after=%"),
        query(p, b"cursor=%ff"),
        query(p, b"within_hours=%D9%A3"),
        query(p, b"q=%22unclosed"),
        query(p, b"q=%2Bcuda+-memory+NEAR(a+b)*"),
        query(p, b"q=%25_%5C%27%3B"),
        query(p, b"q=" + b"%E2%9C%93" * 300),
    ],
    "control byte": lambda p: [
        request(p + b"\x00"),
        request(p + b"\x01x"),
        request(p + b"\x7f"),
        request(query(p, b"tag=\x1b[31m")),
        request(query(p, b"tag=a\x00b")),
        request(query(p, b"q=a%00b")),
        request(p, headers=[(b"Accept", b"text/html\x00")]),
        request(p, headers=[(b"X-Junk", b"a\x01b")]),
        request(p, headers=[(b"X-Junk", b"a\rb")]),
        request(p, headers=[(b"X\x00Junk", b"a")]),
        request(p, headers=[(b"HX-Current-URL", b"http://127.0.0.1/\x7f")]),
    ],
    "overlong UTF-8": lambda p: [
        request(p + b"%c0%af"),
        request(p + b"%e0%80%af"),
        request(p + b"%f0%80%80%af"),
        request(p + b"%ed%a0%80"),
        request(p + b"%f4%90%80%80"),
        request(p + b"\xc0\xaf"),
        request(query(p, b"tag=%c0%80")),
        request(query(p, b"tag=\xe0\x80\xaf")),
        request(query(p, b"status=%c1%b1ueued")),
    ],
    "Accept": with_header(
        b"Accept",
        [
            b"*/*;q=abc",
            b"application/json;q=2",
            b"text/html, application/problem+json",
            b";;;,,,",
            b"application/problem+json",
            b"text/*;q=0, */*;q=0",
            b"\xc3\xa9/\xc3\xa9",
            b"text/html;level=" + b"9" * 400,
            b"",
        ],
    ),
    "Content-Type": lambda p: (
        [
            request(p, method=b"POST", headers=[(b"Content-Type", ct), (b"Content-Length", b"3")])
            + b"{[%"
            for ct in (
                b"application/json",
                b"multipart/form-data; boundary=",
                b"multipart/form-data",
                b"application/x-www-form-urlencoded",
                b"text/plain; charset=utf-99",
                b"junk",
                b";",
            )
        ]
        + [request(p, headers=[(b"Content-Type", b"application/json; charset=\xff")])]
    ),
    "X-Forwarded-*": lambda p: [
        request(p, headers=[(name, value)])
        for name, value in (
            (b"X-Forwarded-For", b"not an address"),
            (b"X-Forwarded-For", b"1.2.3.4, , ,"),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-Proto", b"javascript"),
            (b"X-Forwarded-Proto", b""),
            (b"X-Forwarded-Host", b"evil.example"),
            (b"X-Forwarded-Host", b"a" * 70),
            (b"X-Forwarded-Host", b"localhost, evil.example"),
            (b"X-Forwarded-Host", b"127.0.0.1:99999"),
            (b"X-Forwarded-Prefix", b"//evil.example"),
            (b"X-Forwarded-Prefix", b"/%00"),
            (b"X-Forwarded-Prefix", b"javascript:alert(1)//"),
            (b"X-Forwarded-Port", b"junk"),
            (b"X-Forwarded-SSL", b"on"),
            (b"Forwarded", b"for=evil;host=evil.example;proto=https"),
            (b"SCRIPT_NAME", b"/elsewhere"),
            (b"X_Forwarded_Host", b"evil.example"),
        )
    ],
    "HX-*": lambda p: (
        [
            request(p, headers=[(b"HX-Request", b"true"), (b"HX-Target", b"results"), extra])
            for extra in (
                (b"HX-Current-URL", b"http://["),
                (b"HX-Current-URL", b"::::"),
                (b"HX-Current-URL", b"http://127.0.0.1/?status=nope&limit=-1"),
                (b"HX-Current-URL", b"/embed?tag=%ff"),
                (b"HX-History-Restore-Request", b"true"),
                (b"HX-Trigger", b"<script>"),
                (b"HX-Target", b"results"),
                (b"HX-Boosted", b"junk"),
            )
        ]
        + [request(p, headers=[(b"HX-Request", b"junk"), (b"HX-Target", b"\xff")])]
    ),
    "If-None-Match": with_header(
        b"If-None-Match",
        [b"*", b'"x"', b'W/"x"', b'"unterminated', b",,,", b"W/", b'"a", ' * 500, b"\xff"],
    ),
    "Range": with_header(
        b"Range",
        [
            b"bytes=0-0",
            b"bytes=5-1",
            b"bytes=-",
            b"bytes=0-1,2-3,4-5",
            b"bytes=99999999999999999999-",
            b"items=0-1",
            b"bytes=-0",
            b"bytes=" + b"0-1," * 500,
        ],
    ),
    "Cookie": with_header(
        b"Cookie",
        [b"a", b"=;=;", b'session="unterminated', b"session=.eJyrVkrOz0nNyQ.x.y", b"\xff=\xfe"],
    ),
    "body": lambda p: [
        request(p, method=b"POST", headers=[(b"Content-Length", b"100")], body=b"short"),
        request(p, method=b"POST", headers=[(b"Transfer-Encoding", b"chunked")], body=b"zz\r\n"),
        request(p, method=b"POST", headers=[(b"Transfer-Encoding", b"gzip, chunked")]),
        request(p, method=b"POST", headers=[(b"Content-Length", b"-1")]),
        request(p, headers=[(b"Expect", b"100-continue"), (b"Content-Length", b"1")], body=b"x"),
        request(p, headers=[(b"Expect", b"junk")]),
        request(p, method=b"GET", headers=[(b"Content-Length", b"4")], body=b"body"),
    ],
}
# Kinds whose variants are paths (or path and query) rather than whole requests.
PATH_KINDS = {"percent-escape"}


def fill(rule: str, values: dict[str, bytes], default: bytes) -> bytes:
    """A rule's path with each variable replaced, byte for byte, by its value."""

    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), default).decode("latin-1")

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", value, rule).encode("latin-1")


def probe_paths(database_url: str, rng: random.Random) -> list[bytes]:
    """Every route of the url_map, its variables filled with a real value and with junk."""
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        task_id = connection.exec_driver_sql("SELECT id FROM training_task LIMIT 1").scalar()
    engine.dispose()
    app = make_app(database_url)
    paths: list[bytes] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        real = {name: value.encode() for name, value in real_values(rule, str(task_id)).items()}
        paths.append(fill(rule.rule, real, b""))
        if rule.arguments:
            for junk in rng.sample(JUNK_FILLS, JUNK_FILLS_PER_RULE):
                paths.append(fill(rule.rule, {}, junk))
    return paths


@dataclass(frozen=True)
class Probe:
    """One request to send, and what kind of hostility it is."""

    kind: str
    data: bytes


def plan(paths: list[bytes], rng: random.Random) -> list[Probe]:
    """For every path and every kind, a few of that kind's variants, drawn with `rng`."""
    probes: list[Probe] = []
    for path in paths:
        for kind, build in KINDS.items():
            variants = build(path)
            for variant in rng.sample(variants, min(VARIANTS_PER_KIND, len(variants))):
                data = request(variant) if kind in PATH_KINDS else variant
                probes.append(Probe(kind, data))
    return probes


def problems(answer: Answer) -> list[str]:
    """What is wrong with an answer: a 5xx, no answer in time, or a link to another host."""
    found = []
    if answer.timed_out:
        found.append(f"no end of answer within {ANSWER_SECONDS:.0f} s")
    if answer.status is not None and answer.status >= 500 and answer.status != NOT_IMPLEMENTED:
        found.append(f"status {answer.status}")
    # Answers from the app (gunicorn's own carry no Server header) are the project's own.
    from_app = answer.header("Server") is not None
    content_type = answer.header("Content-Type") or ""
    if from_app and (answer.status or 0) >= 400 and not content_type.startswith(PROBLEM_OR_PAGE):
        found.append(f"error answered as {content_type!r}")
    if link := answer.header("Link"):
        host = urlsplit(link.strip("<>").split(">")[0]).hostname
        if host not in ALLOWED:
            found.append(f"Link to {host!r}")
    return found


def test_hostile_requests_get_clear_answers_from_live_workers(
    gunicorn_server: Server, served_database: str
) -> None:
    rng = random.Random(SEED)
    probes = plan(probe_paths(served_database, rng), rng)
    workers_before = gunicorn_server.worker_pids()
    stop_at = time.monotonic() + SENDING_BUDGET_SECONDS

    def send(probe: Probe) -> Answer | None:
        if time.monotonic() > stop_at:
            return None
        return exchange(gunicorn_server.port, probe.data, ANSWER_SECONDS)

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(send, probes))
    elapsed = time.monotonic() - started

    sent: Counter[str] = Counter()
    statuses: dict[str, Counter[int | None]] = defaultdict(Counter)
    failures: dict[str, list[str]] = defaultdict(list)
    for probe, answer in zip(probes, answers, strict=True):
        if answer is None:
            continue
        sent[probe.kind] += 1
        statuses[probe.kind][answer.status] += 1
        for problem in problems(answer):
            failures[probe.kind].append(f"{problem}: {probe.data[:160]!r}")
    print(f"\n{sum(sent.values())} of {len(probes)} requests in {elapsed:.1f} s")
    for kind in KINDS:
        answered = ", ".join(f"{s}: {n}" for s, n in sorted(statuses[kind].items(), key=str))
        print(f"  {kind}: {sent[kind]} sent; {answered}; {len(failures.get(kind, []))} failed")

    assert sum(sent.values()) == len(probes), "the time budget ran out before every request"
    assert not failures, "\n".join(f"{k}: {len(v)}, e.g. {v[:3]}" for k, v in failures.items())
    assert gunicorn_server.worker_pids() == workers_before, "a worker was replaced"
    for pid in workers_before:
        os.kill(pid, 0)  # raises if the worker is gone
    assert gunicorn_server.trouble() == []
