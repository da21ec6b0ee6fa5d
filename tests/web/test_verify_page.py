"""The public verification page, GET /verify (rpc/static/verify.html, rpc/pages.py).

Two layers:

* the page as served: through the ASGI app (no network) and by a real daemon,
  with its security headers;
* the page at work in real headless Chromium (Debian's ``chromium`` and
  ``chromium-driver``, driven by selenium), against a real four-node testnet:
  a file attested on one court's node is verified in the browser on another
  court's node, with and without the genesis file; an unknown file is "not
  attested"; a proof with one flipped byte (signature, Merkle path) or checked
  against another genesis is reported invalid with its reason.  For the
  tampered cases the page is served by a small in-test HTTP server that
  answers ``evidence.verify`` with the real node's answer and
  ``evidence.getProof`` with the real proof, altered.

Every wait is bounded (WebDriverWait, wait_until); nothing sleeps.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio

from config import load_genesis
from rpc.metrics import Registry
from rpc.pages import CSP, HEADERS, PAGES
from rpc.server import make_app
from tests.daemon.harness import Cluster, wait_until
from tests.rpc.fakes import FakeNode, chain_dispatcher

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_TIMEOUT_S = 300
VERDICT_TIMEOUT_S = 30
CASE_NO = "(2026)吉0102民初88号"
TITLE = "民事调解书"
SHANGHAI = timezone(timedelta(hours=8))  # China has kept UTC+8 without DST since 1991
DONE_STATES = ("verified", "not-attested", "invalid", "error", "unsupported")


# ---------------------------------------------------------------------------
# the page as served


def _asgi_get(path: str, method: str = "GET") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    node = FakeNode()
    app = make_app(chain_dispatcher(node), node_api=node, metrics=Registry(),
                   auth=lambda _token: None)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [],
             "client": ("127.0.0.1", 5000), "query_string": b""}
    trio.run(app, scope, receive, send)
    start, body = sent
    return start["status"], start["headers"], body["body"]


def test_verify_page_through_asgi_app() -> None:
    status, headers, body = _asgi_get("/verify")
    assert status == 200
    names = [k.decode() for k, _ in headers]
    values = {k.decode(): v.decode() for k, v in headers}
    assert values["content-type"] == "text/html; charset=utf-8"
    assert body == PAGES["/verify"][1]
    assert values["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP
    assert "'unsafe-inline'" not in CSP and "'sha256-" in CSP
    assert values["x-content-type-options"] == "nosniff"
    assert values["referrer-policy"] == "no-referrer"
    assert values["cache-control"] == "no-store"
    for name, _ in HEADERS:  # every security header exactly once
        assert names.count(name.decode()) == 1, (name, names)
    assert _asgi_get("/verify", "POST")[0] == 405
    assert _asgi_get("/verify/x")[0] == 404


def test_page_is_self_contained() -> None:
    html = PAGES["/verify"][1].decode("utf-8")
    lowered = html.lower()
    assert "<script src" not in lowered and "<script " not in lowered
    assert "http://" not in lowered and "https://" not in lowered  # no CDN, font, analytics
    assert "@import" not in lowered and "url(" not in lowered
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.DOTALL)
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", markup), "inline handler: CSP blocks it"
    assert not re.search(r"<[^>]*\sstyle\s*=", markup), "style attribute: CSP blocks it"
    assert 'name="viewport"' in html
    for text in ("已存证并验证", "Attested and verified", "未找到存证", "Not attested",
                 "证明无效", "Proof INVALID", "未提供 genesis：仅与本节点一致",
                 "no genesis given: consistent with this node only", "Asia/Shanghai",
                 "pbftd verify", "文件不会离开您的浏览器", "the file never leaves your browser"):
        assert text.lower() in lowered, text


# ---------------------------------------------------------------------------
# browser plumbing


def _missing() -> list[str]:
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


def _ensure_browser() -> None:
    """Debian's chromium + chromium-driver, installed with apt when we are root."""
    missing = _missing()
    if not missing:
        return
    what = f"{', '.join(missing)} missing (Debian packages chromium, chromium-driver)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{what}; not root or no apt-get, so not installing: "
                    "apt-get install chromium chromium-driver")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium",
                     "chromium-driver"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=APT_TIMEOUT_S, check=False)
            if done.returncode != 0:
                pytest.skip(f"{what}; {' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what}; apt-get did not finish within {APT_TIMEOUT_S}s")
    if _missing():
        pytest.skip(f"still missing after apt-get install: {', '.join(_missing())}")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium; "
                                           "it belongs in the test extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _ensure_browser()
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=390,844",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as mp:
        # the driver and browser are given: Selenium Manager must not fetch anything
        mp.setenv("SE_OFFLINE", "true")
        mp.setenv("SE_AVOID_STATS", "true")
        drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def _phone(drv: Any, width: int = 390, height: int = 844) -> None:
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 3, "mobile": True})


def _open(drv: Any, base_url: str) -> None:
    drv.get(base_url + "verify")
    _phone(drv)
    drv.get_log("browser")  # drop earlier messages


def _check(drv: Any, file: Path, genesis: Path | None = None) -> dict[str, Any]:
    """Pick (genesis, then) the file, wait for the verdict, return what it shows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if genesis is not None:
        drv.find_element(By.ID, "genesis").send_keys(str(genesis))
    drv.find_element(By.ID, "file").send_keys(str(file))
    verdict = drv.find_element(By.ID, "verdict")
    try:
        state = WebDriverWait(drv, VERDICT_TIMEOUT_S).until(
            lambda _d: (s := verdict.get_attribute("data-state")) in DONE_STATES and s)
    except TimeoutException:
        raise AssertionError(f"no verdict within {VERDICT_TIMEOUT_S}s; state "
                             f"{verdict.get_attribute('data-state')!r}; browser log: "
                             f"{[e['message'] for e in drv.get_log('browser')]}") from None
    texts = drv.execute_script("""
        const q = (sel) => Array.from(document.querySelectorAll(sel)).map(e => e.textContent);
        const r = document.getElementById('reason');
        return {title: document.getElementById('verdict-title').textContent,
                body: document.getElementById('verdict-body').textContent,
                courts: q('#verdict dd.court'), cases: q('#verdict dd.case-no'),
                kinds: q('#verdict dd.kind'), heights: q('#verdict dd.height'),
                times: q('#verdict dd.time'), signers: q('#verdict dd.signers'),
                genesis: q('#verdict dd.genesis-hash'),
                warning: !!document.getElementById('no-genesis-warning'),
                code: r ? r.getAttribute('data-code') : null,
                reason: r ? r.textContent : null};""")
    csp = [e["message"] for e in drv.get_log("browser") if "Content Security Policy" in
           e["message"]]
    assert not csp, f"CSP blocked something on the page: {csp}"
    return {"state": state, **texts}


def _no_horizontal_overflow(drv: Any, width: int) -> None:
    _phone(drv, width)
    scroll, inner, client, wide = drv.execute_script("""
        const w = arguments[0];
        const wide = Array.from(document.querySelectorAll('body *'))
            .filter(e => e.getBoundingClientRect().right > w + 0.5)
            .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' +
                             Math.round(e.getBoundingClientRect().right));
        return [document.documentElement.scrollWidth, window.innerWidth,
                document.documentElement.clientWidth, wide];""", width)
    assert scroll <= width and inner == width and client == width, \
        f"page is {scroll}px wide at {width}px (innerWidth {inner}); too wide: {wide}"


# ---------------------------------------------------------------------------
# a real testnet


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("net")
    cluster = Cluster.create(directory, nodes=4)
    try:
        cluster.start_all()
        cluster.wait_ready()
        doc = directory / "调解书-88.pdf"
        doc.write_bytes(b"%PDF-1.7 mediation agreement\n" + os.urandom(200_000))
        sha = _sha256_file(doc)
        attester, reader = cluster.ids[-1], cluster.ids[1]
        # one batch of six, so the proof's Merkle path is not empty
        items = [{"sha256": hashlib.sha256(os.urandom(32)).hexdigest(), "kind": "other",
                  "case_no": "(2026)吉0102民初1号"} for _ in range(6)]
        items[3] = {"sha256": sha, "kind": "mediation_agreement", "case_no": CASE_NO,
                    "title": TITLE}
        results = cluster.client(attester, timeout_s=30).call(
            "evidence.attestBatch", {"items": items, "wait": True})["results"]
        attested = results[3]
        assert attested["status"] == "committed", attested
        node = cluster.client(reader)
        answer = wait_until(
            lambda: (a := node.call("evidence.verify", {"sha256": sha}))["attested"] and a,
            30, f"{reader} to see the attestation made on {attester}")
        proof = node.call("evidence.getProof", {"tx_id": attested["tx_id"]})
        assert proof["merkle"]["size"] > 1 and proof["merkle"]["path"], proof["merkle"]
        other_proof = node.call("evidence.getProof", {"tx_id": results[0]["tx_id"]})
        genesis_path = directory / "genesis.json"
        yield {"cluster": cluster, "doc": doc, "sha": sha, "attested": attested,
               "attester": attester, "url": cluster.court(reader).rpc_url, "answer": answer,
               "proof": proof, "other_proof": other_proof, "genesis_path": genesis_path,
               "genesis": load_genesis(genesis_path), "dir": directory}
    finally:
        cluster.close()


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _time_text(ms: int, tz: timezone) -> str:
    return datetime.fromtimestamp(ms // 1000, tz).strftime("%Y-%m-%d %H:%M:%S") + \
        f".{ms % 1000:03d}"


def _rewritten_genesis(source: Path, target: Path) -> Path:
    """The same genesis spelt differently: keys reversed, other indentation, the
    default consensus parameters left out. Its hash must not change."""
    doc = json.loads(source.read_text())
    assert doc["consensus"] == {"checkpoint_interval_blocks": 16, "watermark_window_blocks": 64}
    del doc["consensus"]
    doc["courts"] = [dict(reversed(list(c.items()))) for c in doc["courts"]]
    target.write_text(json.dumps(dict(reversed(list(doc.items()))), ensure_ascii=False,
                                 indent=4))
    return target


def test_daemon_serves_page_with_csp(net: dict[str, Any]) -> None:
    with urllib.request.urlopen(net["url"] + "verify", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.read() == PAGES["/verify"][1]


def test_browser_verifies_attested_file_with_genesis(driver: Any, net: dict[str, Any],
                                                     tmp_path: Path) -> None:
    genesis = net["genesis"]
    court = genesis.court(net["attester"])
    _open(driver, net["url"])
    shown = _check(driver, net["doc"], _rewritten_genesis(net["genesis_path"],
                                                          tmp_path / "genesis.json"))
    assert shown["state"] == "verified", shown
    assert "已存证并验证" in shown["title"] and "Attested and verified" in shown["title"]
    assert shown["cases"] == [CASE_NO]
    assert shown["courts"] == [f"{court.name} ({court.id})"]
    assert shown["kinds"] == ["调解书 mediation agreement"]
    assert shown["heights"] == [str(net["attested"]["height"])]
    assert TITLE in shown["body"]
    ms = net["proof"]["header"]["batch_time_ms"]  # the certified time
    assert _time_text(ms, SHANGHAI) + " 北京时间 Asia/Shanghai" in shown["times"][0]
    assert "（" + _time_text(ms, UTC) + " UTC）" in shown["times"][0]
    # the page computed the genesis hash from the file itself, as config does
    assert shown["genesis"] == [genesis.genesis_hash_hex()]
    assert not shown["warning"]
    signers = shown["signers"][0].split("、")
    assert len(signers) >= genesis.quorum and len(set(signers)) == len(signers)
    driver.save_screenshot(str(tmp_path / "verified-390x844.png"))
    assert (tmp_path / "verified-390x844.png").stat().st_size > 0
    _no_horizontal_overflow(driver, 390)
    _no_horizontal_overflow(driver, 360)
    size = driver.execute_script("""return [
        parseFloat(getComputedStyle(document.body).fontSize),
        document.getElementById('file').getBoundingClientRect().height];""")
    assert size[0] >= 16 and size[1] >= 44, size


def test_browser_without_genesis_says_node_only(driver: Any, net: dict[str, Any]) -> None:
    _open(driver, net["url"])
    shown = _check(driver, net["doc"])
    assert shown["state"] == "verified", shown
    assert shown["warning"]
    assert "未提供 genesis：仅与本节点一致" in shown["body"]
    assert "No genesis given: consistent with this node only" in shown["body"]
    assert shown["courts"] == [net["attester"]]  # no genesis: no court names, the id
    assert shown["genesis"] == [net["proof"]["genesis_hash"]]


def test_browser_not_attested(driver: Any, net: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "unknown.txt"
    other.write_bytes(os.urandom(4096))
    _open(driver, net["url"])
    shown = _check(driver, other, net["genesis_path"])
    assert shown["state"] == "not-attested", shown
    assert "未找到存证" in shown["title"] and "Not attested" in shown["title"]
    assert _sha256_file(other) in shown["body"]


def test_browser_rejects_other_genesis(driver: Any, net: dict[str, Any], tmp_path: Path) -> None:
    """The keys come from the user's genesis: a genesis with one validator key
    changed is another chain, whatever the node says."""
    doc = json.loads(net["genesis_path"].read_text())
    doc["courts"][0]["public_key"] = "ab" * 32
    forged = tmp_path / "genesis.json"
    forged.write_text(json.dumps(doc, ensure_ascii=False))
    _open(driver, net["url"])
    shown = _check(driver, net["doc"], forged)
    assert shown["state"] == "invalid", shown
    assert shown["code"] == "genesis_hash_mismatch", shown


# ---------------------------------------------------------------------------
# tampered proofs, served by a fake node


class _FakeNode:
    """Serves the page and answers evidence.verify / evidence.getProof from fixtures."""

    def __init__(self, answer: dict[str, Any], proof: dict[str, Any]) -> None:
        self.answer, self.proof = answer, proof
        self.tamper: Callable[[dict[str, Any]], None] = lambda _p: None
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _reply(self, status: int, ctype: str, body: bytes,
                       extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra:
                    self.send_header(name.decode(), value.decode())
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path in PAGES:
                    ctype, body = PAGES[self.path]
                    self._reply(200, ctype, body, HEADERS)
                else:
                    self._reply(404, "application/json", b'{"error":"not found"}')

            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.calls.append(req["method"])
                if req["method"] == "evidence.verify":
                    result: Any = fake.answer
                elif req["method"] == "evidence.getProof":
                    result = copy.deepcopy(fake.proof)
                    fake.tamper(result)
                else:
                    result = None
                body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}).encode()
                self._reply(200, "application/json", body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _FakeNode:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _flip_hex(text: str, at: int) -> str:
    return text[:at] + format(int(text[at], 16) ^ 1, "x") + text[at + 1:]


def _flip_sig(proof: dict[str, Any]) -> None:
    sig = proof["commit_certificate"]["signatures"][0]
    sig["sig_hex"] = _flip_hex(sig["sig_hex"], 10)


def _flip_path(proof: dict[str, Any]) -> None:
    path = proof["merkle"]["path"]
    path[-1] = _flip_hex(path[-1], 0)


def _drop_signatures(proof: dict[str, Any]) -> None:
    cert = proof["commit_certificate"]
    cert["signatures"] = cert["signatures"][:1]


def _relabel(proof: dict[str, Any]) -> None:
    """Claim another court made it: the tx fields no longer match the tx bytes."""
    proof["tx"]["origin"] = "spc" if proof["tx"]["origin"] != "spc" else "jl-high"


TAMPERS = [
    (None, "verified", None),
    (_flip_sig, "invalid", "bad_signature"),
    (_flip_path, "invalid", "merkle_path_invalid"),
    (_drop_signatures, "invalid", "insufficient_quorum"),
    (_relabel, "invalid", "tx_field_mismatch"),
    ("other-document", "invalid", "proof_mismatch"),
]
REASON_ZH = {"bad_signature": "签名无效", "merkle_path_invalid": "Merkle 路径不符",
             "insufficient_quorum": "法定人数", "tx_field_mismatch": "交易字段不符",
             "proof_mismatch": "证明与查询记录或文件不符"}


@pytest.mark.parametrize(("tamper", "state", "code"), TAMPERS,
                         ids=["untouched", "signature-byte", "merkle-path-byte", "one-signature",
                              "other-court", "other-document"])
def test_browser_tampered_proof(driver: Any, net: dict[str, Any], tamper: Any, state: str,
                                code: str | None) -> None:
    with _FakeNode(net["answer"], net["proof"]) as fake:
        if tamper == "other-document":
            # a lying node answers with a valid proof, of another document in the same block
            other = net["other_proof"]
            fake.proof = other
            fake.answer = {**net["answer"], "records": [
                {**net["answer"]["records"][0], "tx_id": other["tx_id"]}]}
        elif tamper is not None:
            fake.tamper = tamper
        _open(driver, fake.url)
        shown = _check(driver, net["doc"], net["genesis_path"])
    assert fake.calls == ["evidence.verify", "evidence.getProof"], fake.calls
    assert shown["state"] == state, shown
    if code is None:
        assert shown["cases"] == [CASE_NO]
        return
    assert "证明无效" in shown["title"] and "Proof INVALID" in shown["title"]
    assert shown["code"] == code, shown
    assert code in shown["reason"] and REASON_ZH[code] in shown["reason"], shown["reason"]
    assert shown["cases"] == []  # nothing of the record is shown as if proven
