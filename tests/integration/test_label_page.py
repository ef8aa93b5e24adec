"""The labelling page (``lrl label``) in a real headless browser (Debian's chromium + chromium-driver, Selenium):
it shows a pair's two CartPole clips, takes labels by click and by keyboard, waits for new pairs, and two browsers
labelling at once lose and duplicate nothing. Skipped only where chromium / chromedriver are not installed."""

from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rlhf_helpers import label_server, make_cartpole_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")
LABEL_KEYS = {"left": "\ue012", "right": "\ue014", "equal": "\ue015", "skip": " "}  # Selenium's arrow keys


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1300,900", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def browsers() -> Iterator[list[Any]]:
    """Two headless chromiums for the module (starting one costs about a second)."""
    pytest.importorskip("selenium", reason="needs selenium (pip install selenium; in the test extra)")
    started: list[Any] = []
    try:
        started += [_browser(), _browser()]
        yield started
    finally:
        for driver in started:
            driver.quit()


def _wait(driver: Any, condition: Any, what: str, timeout: float = 20.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def _shown(driver: Any) -> str:
    """The id of the pair on screen ('' while the page waits for new pairs)."""
    return driver.execute_script("return document.body.dataset.query")


def _clips_loaded(driver: Any) -> bool:
    return driver.execute_script(
        "const imgs = [document.getElementById('clip-left'), document.getElementById('clip-right')];"
        "return imgs.every(i => i.complete && i.naturalWidth > 0 && i.offsetWidth > 0);")


def _press(driver: Any, label: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.TAG_NAME, "body").send_keys(LABEL_KEYS[label])


def _told(driver: Any) -> int:
    """How many answers the page has had acknowledged or refused."""
    return driver.execute_script("return window.lrl.acked.length + window.lrl.refused.length")


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_page_shows_two_clips_labels_by_click_and_key_and_waits_for_new_pairs(browsers, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browsers[0]
    store = make_cartpole_store(tmp_path / "preferences", 3)
    with label_server(store, poll_ms=200) as server:
        driver.get(server.url + "?name=ann")
        _wait(driver, lambda d: _shown(d) == "q0" and _clips_loaded(d), "the first pair's two clips load")
        srcs = [driver.find_element(By.ID, f"clip-{side}").get_attribute("src") for side in ("left", "right")]
        assert srcs == [f"{server.url}clips/q0-0.gif", f"{server.url}clips/q0-1.gif"]
        widths = driver.execute_script("return [document.getElementById('clip-left').naturalWidth, "
                                       "document.getElementById('clip-right').naturalWidth]")
        assert widths == [300, 300]  # the CartPole frames (600x400), halved
        buttons = _text(driver, "buttons")
        for key in ("←", "→", "↓", "space", "1", "2", "3", "0"):
            assert key in buttons  # the shortcuts are on the page
        assert (_text(driver, "mine"), _text(driver, "labels"), _text(driver, "pending")) == ("0", "0", "3")

        driver.find_element(By.ID, "btn-left").click()
        _wait(driver, lambda d: _told(d) == 1, "the click's answer acknowledged")
        # from the moment an answer is acknowledged the answered pair is off the page: a key pressed before the
        # next pair is shown is not taken as an answer to a pair already answered (and silently dropped)
        assert _shown(driver) in ("", "q1")
        _wait(driver, lambda d: _shown(d) == "q1" and _clips_loaded(d), "the next pair after a click")
        assert store.labels()["q0"]["label"] == "left" and store.labels()["q0"]["by"] == "person:ann"
        _press(driver, "right")
        _wait(driver, lambda d: _shown(d) == "q2", "the next pair after the → key")
        assert store.labels()["q1"]["label"] == "right"
        _press(driver, "equal")
        _wait(driver, lambda d: _shown(d) == "" and d.find_element(By.ID, "waiting").is_displayed(),
              "'nothing to label' once every pair is labelled")
        assert (_text(driver, "mine"), _text(driver, "labels"), _text(driver, "pending")) == ("3", "3", "0")

        make_cartpole_store(store.root, 1, run=store.run, start=3)  # the run asks a new query while the page waits
        _wait(driver, lambda d: _shown(d) == "q3" and _clips_loaded(d), "the new pair appears without a reload")
        _press(driver, "skip")
        _wait(driver, lambda d: _told(d) == 4, "the 'can't tell' answer acknowledged")
        acked = driver.execute_script("return window.lrl.acked")
    expected = {"q0": "left", "q1": "right", "q2": "equal", "q3": "skip"}
    assert {a["id"]: a["label"] for a in acked} == expected
    assert {k: v["label"] for k, v in store.labels().items()} == expected
    assert len((store.root / "labels.jsonl").read_text().splitlines()) == 4


def _drive(driver: Any, store_root: Path, out: dict[str, Any]) -> None:
    """Label what the page shows until nothing is pending; the label depends on the pair (left, right, equal)."""
    from lrl.rlhf.store import PreferenceStore

    try:
        store = PreferenceStore.open(store_root)
        while True:
            shown = _wait(driver, lambda d: _shown(d) or (store.counts()["pending"] == 0 and "done"),
                          "a pair to label, or nothing pending")
            if shown == "done":
                break
            out.setdefault("first", shown)
            told = _told(driver)
            _press(driver, ("left", "right", "equal")[int(shown[1:]) % 3])
            _wait(driver, lambda d, told=told: _told(d) == told + 1, "the answer acknowledged or refused")
        out["acked"] = driver.execute_script("return window.lrl.acked")
        out["refused"] = driver.execute_script("return window.lrl.refused")
    except Exception as err:  # reported by the test's thread
        out["error"] = err


def test_two_browsers_at_once_lose_and_duplicate_nothing(browsers, tmp_path):
    store = make_cartpole_store(tmp_path / "preferences", 10, k=8)
    with label_server(store, poll_ms=200) as server:
        results: list[dict[str, Any]] = [{}, {}]
        for driver, name in zip(browsers, ("ann", "bob"), strict=True):
            driver.get(server.url + f"?name={name}")
            _wait(driver, _clips_loaded, "the clips load")
        threads = [threading.Thread(target=_drive, args=(d, store.root, r)) for d, r in zip(browsers, results,
                                                                                            strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for r in results:
        assert "error" not in r, r.get("error")
    assert results[0]["first"] != results[1]["first"]  # each browser was handed its own pair
    stored = {k: (v["label"], v["by"]) for k, v in store.labels().items()}
    assert len((store.root / "labels.jsonl").read_text().splitlines()) == 10 == len(stored)  # one label a query
    told = {a["id"]: (a["label"], f"person:{name}") for r, name in zip(results, ("ann", "bob"), strict=True)
            for a in r["acked"]}
    assert told == stored  # every acknowledged label is in the store, and the store holds nothing else
    assert sum(len(r["acked"]) for r in results) == 10  # no pair acknowledged to both
    assert all(len(r["acked"]) >= 2 for r in results)  # both labelled (the pairs were shared out)


def test_second_answer_to_a_pair_is_refused_on_the_page(browsers, tmp_path):
    """Two tabs of one labeller show the same pair (one lease): the second answer is refused, not duplicated."""
    store = make_cartpole_store(tmp_path / "preferences", 2, k=8)
    with label_server(store) as server:
        for driver in browsers:
            driver.get(server.url + "?name=cat")
            _wait(driver, lambda d: _shown(d) == "q0" and _clips_loaded(d), "both show the same pair")
        _press(browsers[0], "left")
        _wait(browsers[0], lambda d: _shown(d) == "q1", "the first answer stored, the next pair shown")
        _press(browsers[1], "right")
        _wait(browsers[1], lambda d: "already labelled" in _text(d, "status") and _shown(d) == "q1",
              "the second answer refused")
        assert browsers[1].execute_script("return [window.lrl.acked.length, window.lrl.refused]") == [0, ["q0"]]
    assert {k: v["label"] for k, v in store.labels().items()} == {"q0": "left"}
    assert len((store.root / "labels.jsonl").read_text().splitlines()) == 1


def test_token_is_required_off_localhost(browsers, tmp_path):
    driver = browsers[0]
    store = make_cartpole_store(tmp_path / "preferences", 1, k=8)
    token = "page-token-0123456789"
    with label_server(store, host="0.0.0.0", token=token) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        for path in ("", "api/next?labeller=a", "clips/q0-0.gif"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 403
        driver.get(base)
        assert "token is required" in driver.find_element("tag name", "body").text
        driver.get(f"{base}?token={token}&name=dan")  # the page passes the token on to its API calls and clips
        _wait(driver, lambda d: _shown(d) == "q0" and _clips_loaded(d), "the clips load with the token")
        _press(driver, "left")
        _wait(driver, lambda d: _told(d) == 1, "the label acknowledged")
    assert store.labels()["q0"]["label"] == "left"


def test_a_run_started_before_any_label_trains_on_what_a_person_labels_in_the_page(browsers, tmp_path):
    """The whole loop with a person: ``lrl train`` with ``rlhf.annotator=human`` starts first and waits; the page
    shows the pairs it rendered, a person labels them in the browser while the run goes on asking more; the run
    trains its reward model on those labels and ``rm/labels`` grows."""
    import os
    import subprocess
    import sys
    import time

    import mlflow
    import torch

    from lrl.rlhf.store import PreferenceStore, StoreError
    from lrl.runs import read_info
    from tests.conftest import ROOT

    run = tmp_path / "human"
    tiny = ["eval.every=0", "eval.final=false", "rlhf.labels=24", "rlhf.initial_fraction=0.34",
            "rlhf.update_every=512", "rlhf.epochs=2", "rlhf.pretrain_epochs=4", "rlhf.members=2",
            "rlhf.hidden=[16]", "algo.epochs=2", "tracking.log_every=256"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrl.cli", "train", "rlhf/cartpole", *tiny, "rlhf.annotator=human",
         "rlhf.human.wait_seconds=120", "rlhf.human.poll_seconds=0.2", "budget.frames=4096", "--run-dir", str(run)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = browsers[0]
    given: list[str] = []
    try:
        deadline = time.monotonic() + 120
        store = None
        while store is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                store = PreferenceStore.open(run / "preferences")
            except StoreError:
                time.sleep(0.2)
        assert store is not None, "the run wrote no preference store"
        with label_server(store, poll_ms=200) as server:
            driver.get(server.url + "?name=tester")
            while proc.poll() is None and time.monotonic() < deadline + 120:
                shown = _shown(driver)
                if not shown or not _clips_loaded(driver):
                    time.sleep(0.1)
                    continue
                told = _told(driver)
                _press(driver, ("left", "right")[len(given) % 2])
                _wait(driver, lambda d, told=told: _told(d) == told + 1, "the answer acknowledged")
                given.append(shown)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    labels = PreferenceStore.open(run / "preferences").labels()
    assert given and set(given) <= set(labels)
    assert all(labels[q]["by"] == "person:tester" for q in given)
    run_id = read_info(run)["mlflow_run_id"]
    history = [m.value for m in mlflow.MlflowClient().get_metric_history(run_id, "rm/labels")]
    assert history and history == sorted(history) and history[-1] > history[0], history
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["rlhf"]["trained_labels"] >= 8  # the reward model learned from the person's labels
