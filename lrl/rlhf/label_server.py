"""``lrl label RUN_DIR``: a web page where people compare a run's pairs of clips (docs/labelling.md).

Standard library only (``http.server``). The page asks ``GET /api/next`` for a pair, shows its two GIFs
(``GET /clips/NAME``) and answers with ``POST /api/label``; a label is acknowledged only after
:meth:`PreferenceStore.add_label` returned (on disk, fsynced). Each browser is handed a different pending pair where
possible: a pair shown to one labeller is leased to them for ``lease_s`` seconds (in this process's memory; the page
renews it while the pair is on screen). Two answers to one pair (a lease ran out, or more people than pairs) are
settled by the store: the first is kept, the second gets 409 "already labelled".

Off 127.0.0.1 every request must carry the token (``?token=`` on the page's URL; the page sends it on as the
``X-Lrl-Token`` header and on its clips' URLs). On 127.0.0.1 without a token, only requests addressed to a loopback
name are answered (a web page elsewhere cannot reach the server through DNS rebinding), and a label must be posted as
``application/json`` (another site's page cannot post one without the browser asking first).
"""

from __future__ import annotations

import errno
import hmac
import html
import ipaddress
import json
import logging
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lrl.errors import LrlError
from lrl.rlhf.store import LABELS, PreferenceStore, StoreError, valid_id

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes of a POST body: a label is under 200
LEASE_S = 300.0  # a pair shown to one labeller is handed to nobody else for this long (the page renews it)
POLL_MS = 2000  # how often a page with nothing to show asks again
CLIP_TYPES = {".gif": "image/gif"}
LABEL_FIELDS = {"id", "label", "labeller"}
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class LabelServerError(LrlError):
    """The page cannot be served as asked (port in use, a bad token). Exit code 2."""

    exit_code = 2


class _Refused(Exception):
    """A request answered with ``status`` and a one-line JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def valid_labeller(name: object) -> bool:
    """A labeller's name (``?name=`` on the page's URL, or one the page makes up): up to 32 of ``[A-Za-z0-9._-]``."""
    return valid_id(name) and len(name) <= 32  # type: ignore[arg-type]


class Leases:
    """Which labeller is shown which pending query, until when (monotonic seconds)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._held: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def pick(self, pending: list[str], who: str, now: float | None = None) -> str | None:
        """The query to show ``who``: the one they hold, else the oldest nobody holds, else (every pending query is
        held by someone else) the one whose lease ends first, shared. Leases ``who`` the query unless it is shared."""
        now = time.monotonic() if now is None else now
        with self._lock:
            alive = set(pending)
            self._held = {q: (w, t) for q, (w, t) in self._held.items() if q in alive and t > now}
            mine = next((q for q in pending if self._held.get(q, ("",))[0] == who), None)
            if mine is None:
                mine = next((q for q in pending if q not in self._held), None)
            if mine is not None:
                self._held[mine] = (who, now + self.seconds)
            elif pending:
                mine = min(pending, key=lambda q: self._held[q][1])
            return mine

    def release(self, query_id: str) -> None:
        with self._lock:
            self._held.pop(query_id, None)


class LabelServer(ThreadingHTTPServer):
    """The labelling page of one preference store. ``token`` None: no token (loopback only)."""

    daemon_threads = True

    def __init__(self, store: PreferenceStore, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 lease_s: float = LEASE_S, poll_ms: int = POLL_MS) -> None:
        if token is None and not is_loopback(host):
            raise LabelServerError(f"--host {host} is not 127.0.0.1: a token is required")
        self.store, self.token, self.poll_ms = store, token, int(poll_ms)
        self.leases = Leases(lease_s)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)

    @property
    def url(self) -> str:
        addr, port = str(self.server_address[0]), self.server_address[1]
        host = f"[{addr}]" if ":" in addr else addr
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Whatever escaped a request's handler (a client gone mid-request): one line, the server goes on."""
        err = sys.exc_info()[1]
        if not isinstance(err, (ConnectionError, TimeoutError)):
            log.warning("lrl label: request from %s failed: %s: %s", client_address[0], type(err).__name__, err)

    # --- what the page asks --------------------------------------------------------------------------------------
    def state(self, labeller: str, pick: bool) -> dict[str, Any]:
        """The counters (``mine``: labels by ``labeller``) and, with ``pick``, the pair to show them next."""
        queries, labels = self.store.queries(), self.store.labels()
        by = f"person:{labeller}"
        unlabelled = [q for q in queries if q["id"] not in labels]
        pending = [q for q in unlabelled if _clip_urls(q) is not None]
        counts = {"mine": sum(rec.get("by") == by for rec in labels.values()), "labels": len(labels),
                  "pending": len(pending), "queries": len(queries), "no_clips": len(unlabelled) - len(pending)}
        out: dict[str, Any] = {"counts": counts}
        if pick:
            chosen = self.leases.pick([q["id"] for q in pending], labeller)
            query = next((q for q in pending if q["id"] == chosen), None)
            out["query"] = None if query is None else {"id": query["id"], "clips": _clip_urls(query)}
        return out

    def label(self, query_id: str, label: str, labeller: str) -> tuple[int, dict[str, Any]]:
        if query_id not in self.store.query_ids():
            raise _Refused(404, f"no query {query_id!r} in this run's store")
        try:
            stored = self.store.add_label(query_id, label, by=f"person:{labeller}")
        except StoreError as err:
            raise _Refused(400, err.message) from None
        self.leases.release(query_id)
        body = self.state(labeller, pick=False)
        if not stored:
            return 409, {"error": "already labelled: someone else answered this pair first", **body}
        return 200, {"stored": True, "id": query_id, "label": label, **body}


def _clip_urls(query: dict[str, Any]) -> list[str] | None:
    """The URLs of a query's two clips, None if it has none the page can show."""
    clips = query.get("clips")
    if not isinstance(clips, list) or len(clips) != 2:
        return None
    urls = []
    for clip in clips:
        name = clip[len("clips/"):] if isinstance(clip, str) and clip.startswith("clips/") else None
        if not _clip_name_ok(name):
            return None
        urls.append(f"/clips/{name}")
    return urls


def _clip_name_ok(name: object) -> bool:
    return valid_id(name) and Path(name).suffix in CLIP_TYPES  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: LabelServer
    timeout = 30  # seconds a client may stall mid-request before its thread lets it go
    server_version = "lrl-label"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per request; errors are answered to the page

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, an unknown method) as one-line JSON too."""
        self.close_connection = True
        self._send_json(code, {"error": f"{code} {message or self.responses.get(code, ('',))[0]}"})

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    # --- routing ---------------------------------------------------------------------------------------------------
    def _answer(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            try:
                params = parse_qs(url.query, max_num_fields=8)
            except ValueError:
                raise _Refused(400, "too many query parameters") from None
            self._check_access(params)
            route = (method, url.path)
            if route == ("GET", "/"):
                self._send_page()
            elif route == ("GET", "/api/next"):
                self._send_json(200, self.server.state(self._labeller(params.get("labeller", [None])[0]), True))
            elif route == ("POST", "/api/label"):
                data = self._read_json()
                self._send_json(*self.server.label(data["id"], data["label"], data["labeller"]))
            elif method == "GET" and url.path.startswith("/clips/"):
                self._send_clip(url.path[len("/clips/"):])
            else:
                raise _Refused(404, f"no {method} {url.path[:80]} here")
        except _Refused as err:
            self._send_json(err.status, {"error": err.message})
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away: nothing to answer
        except Exception as err:  # never a traceback to the page, never the server's end
            log.warning("lrl label: %s %s failed: %s: %s", method, self.path[:80], type(err).__name__, err)
            self._send_json(500, {"error": f"the server failed: {type(err).__name__}: {' '.join(str(err).split())}"})

    def _check_access(self, params: dict[str, list[str]]) -> None:
        token = self.server.token
        if token is not None:
            given = self.headers.get("X-Lrl-Token") or params.get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise _Refused(403, "a token is required: open the URL that lrl label printed (ending ?token=...)")
            return
        host = urlsplit("//" + self.headers.get("Host", "")).hostname or ""
        if not is_loopback(host):
            raise _Refused(403, "this page answers only at 127.0.0.1 or localhost")

    @staticmethod
    def _labeller(name: object) -> str:
        if not valid_labeller(name):
            raise _Refused(400, "labeller must be up to 32 of [A-Za-z0-9._-]")
        return str(name)

    def _read_json(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None:
            raise _Refused(411, "Content-Length is required")
        if not length.isdigit():
            raise _Refused(400, "bad Content-Length")
        if int(length) > MAX_BODY:
            self.close_connection = True
            raise _Refused(413, f"body over {MAX_BODY} bytes")
        if self.headers.get_content_type() != "application/json":
            raise _Refused(415, "send the label as application/json")
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise ConnectionError("the client closed the connection mid-body")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "the body must be a JSON object")
        unknown, missing = set(data) - LABEL_FIELDS, LABEL_FIELDS - set(data)
        if unknown or missing:
            what = "unknown field(s) " + ", ".join(sorted(map(repr, unknown))[:4]) if unknown else ""
            what += ("; " if unknown and missing else "") + ("missing " + ", ".join(sorted(missing)) if missing else "")
            raise _Refused(400, f"{what}: send id, label and labeller")
        if not valid_id(data["id"]):
            raise _Refused(400, "id must be a query id (up to 64 of [A-Za-z0-9._-])")
        if data["label"] not in LABELS:
            raise _Refused(400, f"label must be one of {', '.join(LABELS)}")
        self._labeller(data["labeller"])
        return data

    # --- responses -------------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: dict[str, Any]) -> None:
        try:
            self._send(status, json.dumps(obj).encode() + b"\n", "application/json",
                       {"Cache-Control": "no-store"})
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _send_clip(self, name: str) -> None:
        clips = (self.server.store.root / "clips").resolve()
        path = clips / name
        if not _clip_name_ok(name) or not path.is_file() or path.resolve().parent != clips:
            raise _Refused(404, "no such clip")
        self._send(200, path.read_bytes(), CLIP_TYPES[path.suffix], {"Cache-Control": "private, max-age=86400"})

    def _send_page(self) -> None:
        nonce = secrets.token_urlsafe(16)
        meta = self.server.store.meta
        page = (PAGE.replace("__NONCE__", nonce).replace("__POLL_MS__", str(self.server.poll_ms))
                .replace("__LEASE_MS__", str(int(self.server.leases.seconds * 1000)))
                .replace("__TITLE__", html.escape(f"{meta.get('env')} · run {meta.get('run')}")))
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self._send(200, page.encode(), "text/html; charset=utf-8",
                   {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Cache-Control": "no-store"})


def open_store(run_dir: Path | str) -> PreferenceStore:
    """The store of ``run_dir`` (``RUN_DIR/preferences``), or ``run_dir`` itself if it is the store."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir} is not a directory; give the run directory of a run with an rlhf section")
    root = run_dir if (run_dir / "store.json").exists() else run_dir / "preferences"
    if not (root / "store.json").exists():
        raise StoreError(f"{run_dir} has no preference store (preferences/store.json); start the run with an rlhf "
                         "section first, or give that run's directory")
    return PreferenceStore.open(root)


def check_token(host: str, token: str | None) -> str | None:
    """The token the server will ask for: the one given, a new one off 127.0.0.1, else None."""
    if token is None:
        return None if is_loopback(host) else secrets.token_urlsafe(16)
    if not 16 <= len(token) <= 128 or not set(token) <= _TOKEN_CHARS:
        raise LabelServerError("--token must be 16 to 128 of [A-Za-z0-9_-]; leave it out to get a random one")
    return token


def serve(run_dir: Path | str, port: int = 8765, host: str = "127.0.0.1", token: str | None = None,
          lease_s: float = LEASE_S, echo: Callable[[str], None] = print) -> None:
    """Serve the labelling page of ``run_dir``'s store until Ctrl-C."""
    store = open_store(run_dir)
    token = check_token(host, token)
    try:
        server = LabelServer(store, host, port, token, lease_s)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise LabelServerError(f"port {port} on {host} is in use (another lrl label?); pick another with "
                                   "--port") from None
        raise LabelServerError(f"cannot listen on {host}:{port}: {err.strerror or err}; check --host and "
                               "--port") from None
    counts = server.state("-", pick=False)["counts"]
    echo(f"labelling {store.meta.get('env')} (run {store.run}): {counts['pending']} pairs pending, "
         f"{counts['labels']} labelled. Open {server.url}  (Ctrl-C stops)")
    if counts["no_clips"]:
        echo(f"{counts['no_clips']} pending pairs have no clips to show (the run did not render them) and are not "
             "offered here")
    if token is not None and not is_loopback(host):
        echo("anyone with this URL can label; prefer an SSH tunnel to 127.0.0.1 (docs/labelling.md)")
    # Ctrl-C stops it even when this process started with SIGINT ignored (a script's background job inherits
    # that, as does any child of a process that ignores it): take Python's default handler while serving
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if main:
            signal.signal(signal.SIGINT, previous)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lrl label · __TITLE__</title>
<style nonce="__NONCE__">
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
header { display: flex; justify-content: space-between; flex-wrap: wrap; gap: 1em; }
#counts span { margin-left: 1.2em; }
#pair { display: flex; gap: 2%; margin: 1em 0; }
#pair figure { flex: 1; margin: 0; text-align: center; }
#pair img { width: 100%; max-width: 600px; border: 2px solid #ccc; image-rendering: pixelated; }
#buttons { display: flex; gap: 1em; flex-wrap: wrap; }
button { font-size: 1.1em; padding: 0.6em 1em; cursor: pointer; }
kbd { border: 1px solid #999; border-radius: 3px; padding: 0 0.3em; font-size: 0.85em; background: #f4f4f4; }
#status { min-height: 1.5em; margin-top: 1em; }
.error { color: #b00; } .hidden { display: none !important; } .saved { opacity: 0.3; }
</style></head>
<body>
<header><h2>Which clip is better?</h2>
<div id="counts">__TITLE__<span>you: <b id="mine">0</b></span><span>all labels: <b id="labels">0</b></span>
<span>pending: <b id="pending">0</b></span></div></header>
<p id="waiting" class="hidden">Nothing to label right now. The run adds pairs as it trains; this page checks
every few seconds.<span id="no-clips"></span></p>
<div id="work" class="hidden">
<div id="pair"><figure><img id="clip-left" alt="left clip"><figcaption>left</figcaption></figure>
<figure><img id="clip-right" alt="right clip"><figcaption>right</figcaption></figure></div>
<div id="buttons">
<button id="btn-left" data-label="left">Left is better <kbd>&larr;</kbd> <kbd>1</kbd></button>
<button id="btn-equal" data-label="equal">Equally good <kbd>&darr;</kbd> <kbd>3</kbd></button>
<button id="btn-right" data-label="right">Right is better <kbd>&rarr;</kbd> <kbd>2</kbd></button>
<button id="btn-skip" data-label="skip">Can't tell <kbd>space</kbd> <kbd>0</kbd></button>
</div></div>
<div id="status"></div>
<script nonce="__NONCE__">
"use strict";
const POLL_MS = __POLL_MS__, RENEW_MS = Math.max(1000, Math.floor(__LEASE_MS__ / 3));
const params = new URLSearchParams(location.search);
const TOKEN = params.get("token") || "";
const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,31}$/;
let who = params.get("name") || sessionStorage.getItem("lrl-labeller");
if (!who || !NAME_RE.test(who)) {
  who = "anon-" + Array.from(crypto.getRandomValues(new Uint8Array(4)), b => b.toString(16).padStart(2, "0")).join("");
}
sessionStorage.setItem("lrl-labeller", who);
// what this page was told: acknowledged labels and pairs someone else answered first (read by the tests)
window.lrl = { who: who, acked: [], refused: [] };
const KEYS = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right", ArrowDown: "equal", "3": "equal",
               " ": "skip", "0": "skip" };
const $ = id => document.getElementById(id);
let current = null, busy = false, timer = null;

function headers(extra) { return Object.assign(TOKEN ? { "X-Lrl-Token": TOKEN } : {}, extra || {}); }
async function call(path, options) {
  const r = await fetch(path, Object.assign({ cache: "no-store" }, options));
  let body = {};
  try { body = await r.json(); } catch (e) { body = { error: "not JSON (" + r.status + ")" }; }
  return { status: r.status, body: body };
}
function say(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }
function counts(c) { if (c) { $("mine").textContent = c.mine; $("labels").textContent = c.labels;
                              $("pending").textContent = c.pending;
                              $("no-clips").textContent = c.no_clips ? " (" + c.no_clips + " pairs without clips are "
                                                                        + "not shown here.)" : ""; } }
function later(ms) { clearTimeout(timer); timer = setTimeout(next, ms); }

function show(q) {
  current = q;
  document.body.dataset.query = q ? q.id : "";
  $("work").classList.remove("saved");
  $("work").classList.toggle("hidden", !q);
  $("waiting").classList.toggle("hidden", !!q);
  if (!q) return;
  const suffix = TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "";
  $("clip-left").src = q.clips[0] + suffix;
  $("clip-right").src = q.clips[1] + suffix;
}

async function next() {
  let r;
  try { r = await call("/api/next?labeller=" + encodeURIComponent(who), { headers: headers() }); }
  catch (e) { say("cannot reach lrl label (" + e.message + "); trying again", true); later(POLL_MS); return; }
  if (r.status !== 200) { say(r.body.error || ("error " + r.status), true); later(POLL_MS); return; }
  counts(r.body.counts);
  const q = r.body.query;
  if (!q || !current || current.id !== q.id) show(q);
  later(q ? RENEW_MS : POLL_MS);  // renews the lease on the pair on screen, or waits for new pairs
}

async function answer(label) {
  if (busy || !current) return;
  busy = true;
  const id = current.id;
  clearTimeout(timer);
  try {
    const r = await call("/api/label", { method: "POST", headers: headers({ "Content-Type": "application/json" }),
                                         body: JSON.stringify({ id: id, label: label, labeller: who }) });
    counts(r.body.counts);
    if (r.status === 200) { window.lrl.acked.push({ id: id, label: label }); say("saved: " + label); }
    else if (r.status === 409) { window.lrl.refused.push(id); say("already labelled by someone else; next pair"); }
    else { say("not saved: " + (r.body.error || r.status) + "; answer again", true); later(POLL_MS); return; }
    // answered: the pair fades and takes no more keys until the next one is shown (no answer is silently dropped)
    current = null;
    document.body.dataset.query = "";
    $("work").classList.add("saved");
  } catch (e) {
    say("not saved (" + e.message + "); answer again", true); later(POLL_MS); return;
  } finally { busy = false; }
  await next();
}

for (const b of document.querySelectorAll("#buttons button")) {
  b.addEventListener("click", () => { b.blur(); answer(b.dataset.label); });  // no focus left for Enter to click
}
document.addEventListener("keydown", e => {
  const label = KEYS[e.key];
  if (!label || e.repeat || e.ctrlKey || e.altKey || e.metaKey) return;
  e.preventDefault();
  answer(label);
});
next();
</script></body></html>
"""
