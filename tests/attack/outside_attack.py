#!/usr/bin/env python3
"""The outside attack on a running presence-sync daemon, as a hostile tester
would make it: bad input on every route, wrong tokens, unaddressable ids,
cursors from nowhere, oversized and malformed requests, and (when the
daemon talks to the embedded simulator) Graph failing under it.

Run it against a daemon you may disturb (it creates agents and contacts
whose ids start with `attack-` and deletes the agents again):

    cargo run --release -- demo --state-dir /tmp/ps-demo    # in one terminal
    python3 tests/attack/outside_attack.py --config /tmp/ps-demo/presence-sync.toml \
        --url http://127.0.0.1:PORT                          # the URL the demo prints

--config gives the API token file, the tenant and client ids (which no
unauthenticated answer may carry) and the simulator's URL (graph_base) for
the fault checks; --no-faults skips those. Only the loopback addresses given
are contacted; every loop is bounded. Exits 0 when everything held, 1
otherwise, printing one line per check.

Python 3.11 standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import random
import re
import socket
import sys
import time
import tomllib
import urllib.parse

# Words that betray a deserializer's internals instead of a message for people.
LEAKS = re.compile(
    r"expected struct|expected u8|expected u16|expected u32|expected u64|expected i64|"
    r"expected usize|with \d+ elements?|invalid type: map|invalid type: sequence|"
    r"untagged enum|serde|at line \d+ column \d+|panicked|RUST_BACKTRACE",
    re.IGNORECASE,
)

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok), detail))
    mark = "ok  " if ok else "FAIL"
    print(f"{mark} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    return ok


class Daemon:
    def __init__(self, url, token, timeout=10.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "http":
            raise SystemExit("--url must be http://host:port")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.token = token
        self.timeout = timeout

    def request(self, method, path, body=None, token="default", headers=None, raw=None):
        """Returns (status, headers, body bytes). `raw` sends bytes as they are."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        h = dict(headers or {})
        if token == "default":
            token = self.token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in h.items():
                conn.putheader(k, v)
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders()
            if data is not None:
                conn.send(data)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, token="default", **kw):
        status, headers, data = self.request(method, path, body, token, **kw)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, headers, data, parsed


def error_shape(status, data, parsed):
    """None when the answer is a well-formed error, else what is wrong."""
    if not isinstance(parsed, dict) or set(parsed) != {"error"}:
        return f"{status}: body is not {{\"error\": ...}}: {data[:200]!r}"
    err = parsed["error"]
    if not isinstance(err, dict):
        return f"{status}: error is not an object"
    if not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
        return f"{status}: error lacks code/message: {err}"
    extra = set(err) - {"code", "message", "field"}
    if extra:
        return f"{status}: unexpected keys {extra}"
    if "field" in err and not isinstance(err["field"], str):
        return f"{status}: field is not a string"
    if LEAKS.search(err["message"]):
        return f"{status}: internals in message: {err['message']!r}"
    if "field" in err and re.search(r"\.\d", err["field"]):
        return f"{status}: field path uses `.N` for an index: {err['field']!r}"
    return None


def routes(daemon):
    status, _, _, doc = daemon.json("GET", "/v1/openapi.json", token=None)
    if status != 200 or not isinstance(doc, dict):
        raise SystemExit(f"cannot read /v1/openapi.json: {status}")
    out = []
    for path, ops in doc.get("paths", {}).items():
        for method in ops:
            if method.upper() in ("GET", "PUT", "POST", "DELETE", "PATCH"):
                out.append((method.upper(), path))
    return doc, out


def fill(path, value="attack-x"):
    return re.sub(r"\{[^}]+\}", value, path)


def attack_auth(daemon, route_list):
    open_paths = {"/healthz", "/readyz", "/metrics", "/v1/openapi.json"}
    bad = []
    for method, path in route_list:
        if path in open_paths or path == "/v1/events":
            continue
        for label, token in [("no token", None), ("wrong token", "not-the-token"),
                             ("empty token", ""), ("token + junk", daemon.token + "x")]:
            status, headers, data, parsed = daemon.json(method, fill(path), {}, token=token)
            problem = error_shape(status, data, parsed)
            if status != 401 or problem or "WWW-Authenticate" not in {k.title() for k in headers} \
                    and "www-authenticate" not in {k.lower() for k in headers}:
                bad.append(f"{method} {path} with {label}: {status} {problem or ''}")
    check("every /v1 route refuses a missing or wrong token with 401, WWW-Authenticate and the error shape",
          not bad, "; ".join(bad[:5]))
    # The event stream too, before any upgrade.
    status, _, _, _ = ws_upgrade(daemon, "/v1/events", token="wrong")
    check("the event stream refuses a wrong token before upgrading", status == 401, f"got {status}")


def random_json(rng, depth=0):
    kinds = ["null", "bool", "int", "float", "str", "list", "obj"] if depth < 4 else ["null", "int", "str"]
    k = rng.choice(kinds)
    if k == "null":
        return None
    if k == "bool":
        return rng.random() < 0.5
    if k == "int":
        return rng.choice([0, -1, 1, 255, 256, 65536, 2**31, 2**53 + 1, -(2**63), 2**64, 10**30])
    if k == "float":
        return rng.choice([0.5, -1e308, 1e308, 3.14])
    if k == "str":
        return rng.choice(["", "x", "a/b", "..", "\u0000", "\u202e", "é" * 300, "A" * 5000, "Available",
                           "On contact", "sales", "💥", "<img src=x onerror=alert(1)>"])
    if k == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["status", "at", "teams_user", "auto_link", "display_name", "groups", "skills", "phone",
            "profile", "queues", "capacity", "queue", "position", "contact_id", "priority", "data",
            "agent_id", "colour"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def attack_bodies(daemon, route_list, rounds):
    rng = random.Random(7)
    five = []
    shape = []
    for method, path in route_list:
        if method not in ("PUT", "POST"):
            continue
        for _ in range(rounds):
            body = random_json(rng)
            status, _, data, parsed = daemon.json(method, fill(path, "attack-fuzz"), body)
            if status >= 500:
                five.append(f"{method} {path} {json.dumps(body)[:120]} -> {status}")
            elif status >= 400:
                problem = error_shape(status, data, parsed)
                if problem:
                    shape.append(f"{method} {path} {json.dumps(body)[:120]} -> {problem}")
        # Not JSON at all, and JSON under the wrong content type.
        for raw, ctype in [(b"{", "application/json"), (b"\xff\xfe", "application/json"),
                           (b'{"status":"Available"}', "text/plain"), (b"[" * 10000, "application/json")]:
            status, _, data = daemon.request(method, fill(path, "attack-fuzz"), raw=raw,
                                             headers={"Content-Type": ctype})
            parsed = None
            try:
                parsed = json.loads(data)
            except ValueError:
                pass
            if status >= 500:
                five.append(f"{method} {path} raw {raw[:20]!r} -> {status}")
            elif status >= 400 and error_shape(status, data, parsed):
                shape.append(f"{method} {path} raw {raw[:20]!r} -> {error_shape(status, data, parsed)}")
    check(f"no 5xx for {rounds} random bodies and 4 malformed ones on every PUT/POST route", not five,
          "; ".join(five[:3]))
    check("every 4xx for them has the error shape, one field-path syntax and no deserializer internals",
          not shape, "; ".join(shape[:3]))


def attack_sizes(daemon):
    status, _, data = daemon.request("GET", "/v1/agents/" + "a" * 100_000)
    parsed = None
    try:
        parsed = json.loads(data)
    except ValueError:
        pass
    check("a 100 kB path gets a 4xx with the error shape", 400 <= status < 500 and not error_shape(status, data, parsed),
          f"{status} {data[:100]!r}")
    big = {"teams_user": "x@example.com", "display_name": "x" * 2_000_000}
    status, _, data, parsed = daemon.json("PUT", "/v1/agents/attack-big", big)
    check("a 2 MB body gets 413 with the error shape", status == 413 and not error_shape(status, data, parsed),
          f"{status} {data[:100]!r}")
    status, _, data, parsed = daemon.json("GET", "/v1/nothing-here")
    check("an unknown route gets 404 with the error shape", status == 404 and not error_shape(status, data, parsed),
          f"{status}")
    status, _, data, parsed = daemon.json("PATCH", "/v1/agents")
    check("a wrong method gets 405 with the error shape", status == 405 and not error_shape(status, data, parsed),
          f"{status}")


def attack_ids(daemon):
    bad = []
    for raw_id in [".", "..", "a%2Fb", "a%3Fb", "a%23b", "%00", "a%20b", "%E2%80%AE", "x" * 129, "%C3%A9"]:
        status, _, data, parsed = daemon.json("PUT", f"/v1/agents/{raw_id}",
                                              {"teams_user": "x@example.com", "auto_link": True})
        field = (parsed or {}).get("error", {}).get("field") if isinstance(parsed, dict) else None
        if status != 400 or field != "agent_id":
            bad.append(f"{raw_id[:20]} -> {status} field={field}")
    check("agent ids outside the documented alphabet get 400 with field agent_id", not bad, "; ".join(bad[:4]))
    bad = []
    for contact_id in ["a/b", "a?b", "a#b", "..", "", "x" * 129, "a b"]:
        status, _, data, parsed = daemon.json("POST", "/v1/contacts",
                                              {"queue": "attack-none", "contact_id": contact_id})
        field = (parsed or {}).get("error", {}).get("field") if isinstance(parsed, dict) else None
        if status != 400 or field != "contact_id":
            bad.append(f"{contact_id[:20]!r} -> {status} field={field}")
    check("contact ids outside the alphabet get 400 with field contact_id", not bad, "; ".join(bad[:4]))
    status, _, data, parsed = daemon.json("POST", "/v1/contacts/attack-none/accept", {"agent_id": "a/b"})
    check("accept with a malformed agent_id is 400 (not 409)", status == 400, f"{status} {data[:120]!r}")


def attack_agent_fields(daemon, upn):
    bad = []
    for value in ["bad\u0000name", "evil\u202ename", "x" * 10_000]:
        status, _, data, parsed = daemon.json("PUT", "/v1/agents/attack-a1",
                                              {"teams_user": upn, "display_name": value, "auto_link": True})
        field = (parsed or {}).get("error", {}).get("field") if isinstance(parsed, dict) else None
        if status != 400 or field != "display_name":
            bad.append(f"{value[:12]!r} -> {status} field={field}")
    check("display names with NUL, a bidi override or 10,000 characters get 400 with the field", not bad,
          "; ".join(bad))
    for what, body in [("group", {"teams_user": upn, "groups": ["g" * 1000], "auto_link": True}),
                       ("skill", {"teams_user": upn, "skills": {"s" * 1000: 5}, "auto_link": True})]:
        status, _, data, parsed = daemon.json("PUT", "/v1/agents/attack-a1", body)
        check(f"a 1,000-character {what} name gets 400", status == 400, f"{status}")
    # PUT replaces: an omitted field goes back to its default.
    status, _, _, first = daemon.json("PUT", "/v1/agents/attack-a1",
                                      {"teams_user": upn, "display_name": "Attack One", "phone": "+15550100", "auto_link": True})
    status2, _, _, second = daemon.json("PUT", "/v1/agents/attack-a1", {"teams_user": upn, "auto_link": True})
    ok = status == 200 and status2 == 200 and isinstance(second, dict) \
        and second.get("display_name") in (None, "") and second.get("phone") in (None, "")
    check("PUT /v1/agents/{id} replaces: omitted display_name and phone are cleared", ok,
          f"{status}/{status2} {json.dumps(second)[:200]}")
    status, _, _, third = daemon.json("PUT", "/v1/agents/attack-a1",
                                      {"teams_user": upn, "display_name": "Attack One", "auto_link": True})
    status4, _, _, fourth = daemon.json("PUT", "/v1/agents/attack-a1",
                                        {"teams_user": upn, "display_name": None, "auto_link": True})
    check("\"display_name\": null clears it", status4 == 200 and isinstance(fourth, dict)
          and fourth.get("display_name") in (None, ""), f"{status4} {json.dumps(fourth)[:200]}")
    status, _, data, parsed = daemon.json("PUT", "/v1/agents/attack-a1/status", {"status": "No Such Status"})
    check("an unknown CC status is 422 with field status", status == 422
          and (parsed or {}).get("error", {}).get("field") == "status", f"{status} {data[:120]!r}")
    status, _, data, parsed = daemon.json("PUT", "/v1/agents/attack-a1/status", {"status": "Available", "at": "yesterday"})
    check("a malformed `at` is 400 with field at", status == 400
          and (parsed or {}).get("error", {}).get("field") == "at", f"{status} {data[:120]!r}")


def ws_upgrade(daemon, path, token=None):
    """Opens a WebSocket; returns (status, headers, socket or None, leftover bytes)."""
    sock = socket.create_connection((daemon.host, daemon.port), timeout=daemon.timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {daemon.host}:{daemon.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    deadline = time.monotonic() + daemon.timeout
    while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        status = 0
    if status != 101:
        sock.close()
        return status, head, None, rest
    return status, head, sock, rest


def ws_frames(sock, rest, seconds, limit=50):
    """Text frames received within `seconds` (at most `limit`)."""
    frames = []
    buf = rest
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(frames) < limit:
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    break
                length = int.from_bytes(buf[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length = int.from_bytes(buf[2:10], "big")
                offset = 10
            if len(buf) < offset + length:
                break
            payload = buf[offset:offset + length]
            buf = buf[offset + length:]
            if opcode == 1:
                frames.append(payload.decode(errors="replace"))
            elif opcode == 8:
                return frames
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    return frames


def attack_events(daemon, upn):
    status, head, sock, rest = ws_upgrade(daemon, "/v1/events?since=99999999999", token=daemon.token)
    if sock is None:
        check("a cursor past the newest event gets a clear answer", 400 <= status < 500, f"{status}")
    else:
        frames = ws_frames(sock, rest, 3, limit=1)
        sock.close()
        first = json.loads(frames[0]) if frames else {}
        check("a cursor past the newest event gets a clear answer", bool(frames) and "ahead" in json.dumps(first),
              f"first frame: {frames[:1]}")
    for bad in ["-1", "abc", "1e3", "18446744073709551616"]:
        status, _, _, _ = ws_upgrade(daemon, f"/v1/events?since={bad}", token=daemon.token)
        check(f"since={bad} is refused with 400 before the upgrade", status == 400, f"{status}")
    # A status report shows on the stream as cc.status_reported.
    status, head, sock, rest = ws_upgrade(daemon, "/v1/events", token=daemon.token)
    if not check("the event stream upgrades with the token", sock is not None, f"{status}"):
        return
    daemon.json("PUT", "/v1/agents/attack-a2", {"teams_user": upn, "auto_link": True})
    daemon.json("PUT", "/v1/agents/attack-a2/status", {"status": "Available"})
    frames = ws_frames(sock, rest, 5)
    sock.close()
    seen = [json.loads(f) for f in frames]
    reported = [e for e in seen if e.get("type") == "cc.status_reported" and e.get("agent_id") == "attack-a2"]
    check("a status report is on the stream as cc.status_reported", bool(reported),
          f"types seen: {[e.get('type') for e in seen]}")


def attack_probes(daemon, forbidden):
    for path in ["/healthz", "/readyz", "/metrics"]:
        status, _, data = daemon.request("GET", path, token=None)
        text = data.decode(errors="replace")
        leaked = [w for w in forbidden if w and w.lower() in text.lower()]
        check(f"unauthenticated {path} carries no client id, tenant or token", not leaked, f"found {leaked}")


def sim_control(sim_url, path, body):
    parsed = urllib.parse.urlparse(sim_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_ready(daemon, want, seconds):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        status, _, data = daemon.request("GET", "/readyz", token=None)
        last = (status, data[:300])
        if (status == 200) == want:
            return True, last
        time.sleep(0.5)
    return False, last


def attack_faults(daemon, sim_url, forbidden):
    ok, last = wait_ready(daemon, True, 60)
    if not check("/readyz is 200 before the faults", ok, f"{last}"):
        return
    for label, fault, clear in [
        ("every Graph call failing with 5xx", {"error_rate": 1.0}, {"error_rate": 0.0}),
        ("an expired client secret", {"secret_expired": True, "expire_tokens": True}, {"secret_expired": False}),
    ]:
        if sim_control(sim_url, "/_sim/faults", fault) >= 300:
            check(f"the simulator takes the fault ({label})", False)
            continue
        ok, last = wait_ready(daemon, False, 15)
        check(f"/readyz turns 503 within 15 s with {label}", ok, f"{last}")
        status, _, data = daemon.request("GET", "/readyz", token=None)
        text = data.decode(errors="replace")
        named = any(w in text for w in ("presence-poller", "presence-writer", "graph"))
        check(f"the 503 names what fails ({label})", status != 200 and named, text[:200])
        leaked = [w for w in forbidden if w and w.lower() in text.lower()]
        check(f"the failing /readyz carries no client id, tenant or token ({label})", not leaked,
              f"found {leaked}")
        sim_control(sim_url, "/_sim/faults", clear)
        ok, last = wait_ready(daemon, True, 60)
        check(f"/readyz is 200 again once {label} ends", ok, f"{last}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the daemon's API, http://127.0.0.1:PORT")
    ap.add_argument("--config", required=True, help="the daemon's config file (token file, ids, simulator)")
    ap.add_argument("--rounds", type=int, default=40, help="random bodies per PUT/POST route")
    ap.add_argument("--no-faults", action="store_true", help="skip the Graph fault checks")
    args = ap.parse_args()
    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(args.config))
    token_file = config.get("api", {}).get("token_file")
    if not token_file:
        raise SystemExit("the config has no api.token_file; this script reads the token from it")
    with open(os.path.join(base, token_file)) as f:
        token = f.read().strip()
    host = urllib.parse.urlparse(args.url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit("only loopback daemons are attacked")
    daemon = Daemon(args.url, token)
    graph = config.get("graph", {})
    forbidden = [graph.get("tenant_id", ""), graph.get("client_id", ""), token]

    doc, route_list = routes(daemon)
    print(f"{len(route_list)} routes from the OpenAPI document")
    status, _, _, users = daemon.json("GET", "/v1/agents")
    upn = "attack.user@example.com"
    sim_url = graph.get("graph_base", "")
    attack_auth(daemon, route_list)
    attack_bodies(daemon, route_list, args.rounds)
    attack_sizes(daemon)
    attack_ids(daemon)
    attack_agent_fields(daemon, upn)
    attack_events(daemon, upn)
    attack_probes(daemon, forbidden)
    if not args.no_faults and sim_url.startswith("http://127."):
        attack_faults(daemon, sim_url, forbidden)
    for agent in ["attack-a1", "attack-a2", "attack-fuzz", "attack-big", "attack-x"]:
        daemon.request("DELETE", f"/v1/agents/{agent}")
    status, _, data = daemon.request("GET", "/healthz", token=None)
    check("the daemon is alive after the attack", status == 200, f"{status}")
    failed = [r for r in RESULTS if not r[1]]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
