#!/usr/bin/env python3
"""End-to-end test of the sgw web console in a real browser.

Run by a Rust integration test that has started an UNACTIVATED gateway.
Drives Debian's Chromium through Playwright (tests/scripts/install-deps.sh
and tests/install-python-deps.sh install both; never `playwright install`).

Environment:
  SGW_URL              console base URL, e.g. https://127.0.0.1:PORT (self-signed)
  SGW_DATA_DIR         the gateway's data dir; holds `activation-code`
  SGW_ISCSI_PORT       the iSCSI portal port on 127.0.0.1
  SGW_OUT              directory for screenshots (01-activate.png, ...)
  SGW_BAD_S3_ENDPOINT  an http URL where nothing listens

Exits 0 when every step passes; otherwise prints the failed step, its page
URL and a FAILED-<step>.png screenshot, and exits 1.
"""
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 30_000  # navigations, downloads, launch: every wait is bounded
EXPECT_MS = 10_000   # assertions on pages already loaded (server-rendered)
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ADMIN, PASSWORD = "admin", "correct-horse-battery"
VOLUME, IQN = "web1", "iqn.2026-11.org.sgw:volume:web1"
NAV = ["dashboard", "volumes", "snapshots", "tapes", "library", "cloud", "settings", "events"]
# One screenshot per page, numbered in this order whatever order they are taken in.
SHOTS = ["activate", "activated", "login", "dashboard", "volumes", "volume-web1",
         "snapshots", "tapes", "library", "cloud", "settings", "events"]


def env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"console_e2e: environment variable {name} is not set")
    return value


URL = env("SGW_URL").rstrip("/")
DATA_DIR = Path(env("SGW_DATA_DIR"))
ISCSI_PORT = int(env("SGW_ISCSI_PORT"))
OUT = Path(env("SGW_OUT"))
BAD_S3 = env("SGW_BAD_S3_ENDPOINT")


class State:
    def __init__(self, browser):
        self.browser = browser
        self.context = new_context(browser)
        self.page = self.context.new_page()
        self.code = ""


class StepFailed(Exception):
    pass


def new_context(browser):
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


@contextlib.contextmanager
def step(name, s):
    """Runs one step; on any failure screenshots the page and raises StepFailed."""
    print(f"console_e2e: {name} ...", flush=True)
    try:
        yield
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        shot = OUT / f"FAILED-{name}.png"
        try:
            s.page.screenshot(path=str(shot), full_page=True)
        except Exception as se:  # noqa: BLE001
            shot = f"(no screenshot: {se})"
        print(f"console_e2e: FAILED step {name!r} at {s.page.url}\n  {type(e).__name__}: {e}\n"
              f"  screenshot: {shot}", file=sys.stderr, flush=True)
        raise StepFailed(name) from e
    print(f"console_e2e: {name} ok", flush=True)


# ---- helpers ---------------------------------------------------------------

def path_of(url):
    return urlsplit(url).path


def wait_at(page, path):
    """Waits until the browser is at `path` (after any redirects)."""
    page.wait_for_url(lambda u: path_of(u) == path, timeout=TIMEOUT_MS)


def screenshot(s, name):
    s.page.screenshot(path=str(OUT / f"{SHOTS.index(name) + 1:02d}-{name}.png"), full_page=True)


def fill_form(page, form, values):
    """Fills fields by name: selects, checkboxes (bool) and text inputs alike."""
    for name, value in values.items():
        field = page.locator(f'{form} [name="{name}"]')
        tag, kind = field.evaluate("e => [e.tagName.toLowerCase(), (e.type || '').toLowerCase()]")
        if tag == "select":
            field.select_option(value)
        elif kind == "checkbox":
            field.set_checked(bool(value))
        else:
            field.fill(value)


def submit(page, button):
    """Clicks a plain-form submit button and waits for the response page."""
    with page.expect_navigation(timeout=TIMEOUT_MS):
        page.locator(button).click()


def activation_form(code, **cloud):
    values = {"code": code, "gateway_name": "lab-gw", "timezone": "UTC",
              "admin_user": ADMIN, "password": PASSWORD, "password_confirm": PASSWORD,
              "cloud_kind": "embedded"}
    values.update(cloud)
    values.update({"cache_size": "2GiB", "library_personality": "aws"})
    return values


def open_page(s, path, shot=None):
    """Opens a logged-in page: it must stay at `path`, show its h1 and the navigation."""
    s.page.goto(URL + path)
    wait_at(s.page, path)
    expect(s.page.locator("h1")).to_be_visible()
    for item in NAV:
        expect(s.page.locator(f"a#nav-{item}")).to_be_visible()
    expect(s.page.locator("form#logout-form button#logout")).to_be_visible()
    if shot:
        screenshot(s, shot)


def poll(s, path, check, what, deadline_s=30, every_s=2):
    """Reloads `path` every `every_s` seconds until check(page) is truthy, up to a deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while True:
        s.page.goto(URL + path)
        wait_at(s.page, path)
        ok, last = check(s.page)
        if ok:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {deadline_s} s (last: {last})")
        time.sleep(every_s)


# ---- steps -----------------------------------------------------------------

def activate_wrong_code(s):
    s.code = (DATA_DIR / "activation-code").read_text().strip()
    assert s.code, "activation-code file is empty"
    s.page.goto(URL + "/")
    wait_at(s.page, "/activate")
    expect(s.page.locator("form#activate-form")).to_be_visible()
    expect(s.page.locator("h1")).to_be_visible()
    screenshot(s, "activate")
    wrong = "WRONG-CODE-0000" if s.code != "WRONG-CODE-0000" else "WRONG-CODE-0001"
    fill_form(s.page, "form#activate-form", activation_form(wrong))
    submit(s.page, "button#activate")  # rate-limited: the answer may take seconds
    error = s.page.locator("#error-code")
    expect(error).to_be_visible()
    expect(error).to_contain_text(re.compile(r"wrong|invalid|incorrect|not match", re.I))
    assert path_of(s.page.url) == "/activate", f"a wrong code left /activate for {s.page.url}"


def activate_bad_s3(s):
    s.page.goto(URL + "/activate")
    fill_form(s.page, "form#activate-form", activation_form(
        s.code, cloud_kind="s3", s3_endpoint=BAD_S3, s3_region="us-east-1",
        s3_bucket="probe", s3_access_key_id="AKIDEXAMPLE",
        s3_secret_access_key="not-a-real-secret", s3_path_style=True))
    submit(s.page, "button#activate")
    error = s.page.locator("#error-cloud")
    expect(error).to_be_visible()
    expect(error).to_contain_text("HEAD bucket")
    assert path_of(s.page.url) == "/activate", f"an unreachable S3 left /activate for {s.page.url}"


def activate_embedded(s):
    s.page.goto(URL + "/activate")
    fill_form(s.page, "form#activate-form", activation_form(s.code))
    submit(s.page, "button#activate")
    wait_at(s.page, "/activated")
    key_path = s.page.locator("#master-key-path")
    expect(key_path).to_be_visible()
    text = key_path.inner_text().strip()
    assert text.startswith("/") and Path(text).is_file(), f"#master-key-path {text!r} is no key file"
    kit = s.page.locator("#recovery-kit")
    expect(kit).to_be_visible()
    screenshot(s, "activated")
    tag = kit.evaluate("e => e.tagName.toLowerCase()")
    target = kit.locator("button, [type=submit]").first if tag == "form" else kit
    with s.page.expect_download(timeout=TIMEOUT_MS) as download:
        target.click()
    size = Path(download.value.path()).stat().st_size
    assert size > 0, "the recovery kit download is empty"


def logged_in_after_activation(s):
    s.page.goto(URL + "/")
    wait_at(s.page, "/dashboard")
    open_page(s, "/dashboard")


def logout_refuses_old_session(s):
    saved = s.context.cookies()
    assert saved, "no cookies while logged in"
    submit(s.page, "form#logout-form button#logout")
    wait_at(s.page, "/login")
    stale = new_context(s.browser)
    try:
        stale.add_cookies(saved)
        response = stale.request.get(URL + "/api/v1/volumes")
        assert response.status == 401, f"GET /api/v1/volumes with the old cookie: {response.status}"
        page = stale.new_page()
        page.goto(URL + "/dashboard")
        wait_at(page, "/login")
    finally:
        stale.close()


def login_wrong_password(s):
    s.page.goto(URL + "/login")
    expect(s.page.locator("h1")).to_be_visible()
    screenshot(s, "login")
    fill_form(s.page, "form#login-form", {"user": ADMIN, "password": PASSWORD + "-wrong"})
    submit(s.page, "button#login")
    expect(s.page.locator("#form-error")).to_be_visible()
    assert path_of(s.page.url) == "/login", f"a wrong password left /login for {s.page.url}"


def login(s):
    s.page.goto(URL + "/login")
    fill_form(s.page, "form#login-form", {"user": ADMIN, "password": PASSWORD})
    submit(s.page, "button#login")
    wait_at(s.page, "/dashboard")
    open_page(s, "/dashboard")


def create_volume(s):
    open_page(s, "/volumes")
    fill_form(s.page, "form#create-volume-form", {"name": VOLUME, "size": "1GiB", "kind": "cached"})
    submit(s.page, "button#create-volume")
    if path_of(s.page.url) != "/volumes":
        open_page(s, "/volumes")
    row = s.page.locator(f'tr[data-volume="{VOLUME}"]')
    expect(row).to_be_visible()
    expect(row.locator(".iqn")).to_have_text(IQN)
    screenshot(s, "volumes")
    open_page(s, f"/volumes/{VOLUME}", "volume-web1")
    expect(s.page.locator("body")).to_contain_text(VOLUME)


def write_over_iscsi(s):
    target = f"iscsi://127.0.0.1:{ISCSI_PORT}/{IQN}/0"
    run = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 8M", target],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"qemu-io exited {run.returncode}: {run.stdout}{run.stderr}"
    assert "wrote 8388608/8388608 bytes" in run.stdout, f"qemu-io did not write: {run.stdout}"


def dashboard_chart(s):
    def written(page):
        chart = page.locator(f'svg.chart[data-volume="{VOLUME}"]')
        if chart.count() == 0:
            return False, "no chart"
        raw = chart.first.get_attribute("data-write-bytes")
        if raw is None or not re.fullmatch(r"\d+", raw.strip()):
            raise AssertionError(f"data-write-bytes is not an integer: {raw!r}")
        return int(raw) > 0, int(raw)

    poll(s, "/dashboard", written, f"chart of {VOLUME} with data-write-bytes > 0")
    open_page(s, "/dashboard", "dashboard")


def snapshots(s):
    open_page(s, "/snapshots", "snapshots")
    expect(s.page.locator("h1")).to_contain_text("Snapshots")


def create_tapes(s):
    open_page(s, "/tapes")
    fill_form(s.page, "form#create-tapes-form",
              {"prefix": "WEB", "count": "2", "size": "1GiB", "pool": "GLACIER", "worm": False})
    submit(s.page, "button#create-tapes")
    if path_of(s.page.url) != "/tapes":
        open_page(s, "/tapes")
    for barcode in ("WEB00001", "WEB00002"):
        expect(s.page.locator(f'tr[data-barcode="{barcode}"]')).to_be_visible()
    screenshot(s, "tapes")


def library(s):
    poll(s, "/library", lambda page: (page.locator('[data-barcode="WEB00001"]').count() > 0, None),
         "WEB00001 in the library")
    open_page(s, "/library", "library")


def other_pages(s):
    for name in ("cloud", "settings", "events"):
        open_page(s, f"/{name}", name)


def csrf_refused(s):
    open_page(s, "/volumes")
    token = s.page.locator('form#create-volume-form input[name="csrf"]').get_attribute("value")
    assert token, "the create-volume form has no csrf value"
    api = s.page.request
    body = {"name": "x0", "size": "1GiB", "kind": "cached"}
    r = api.post(URL + "/api/v1/volumes", data=json.dumps(body),
                 headers={"content-type": "application/json"})
    assert r.status == 403, f"JSON POST without X-CSRF-Token: {r.status}"
    r = api.post(URL + "/volumes", form={"name": "x1", "size": "1GiB", "kind": "cached"})
    assert r.status == 403, f"form POST without csrf: {r.status}"
    r = api.post(URL + "/volumes", headers={"origin": "https://evil.example"},
                 form={"name": "x3", "size": "1GiB", "kind": "cached", "csrf": token})
    assert r.status == 403, f"form POST from Origin https://evil.example: {r.status}"
    # Control: the same post with the token and our own origin is accepted, so
    # the 403s above came from the CSRF checks and not from a broken route.
    r = api.post(URL + "/volumes", headers={"origin": URL},
                 form={"name": "x2", "size": "1GiB", "kind": "cached", "csrf": token})
    assert r.ok, f"form POST with csrf from our own origin: {r.status}"


STEPS = [activate_wrong_code, activate_bad_s3, activate_embedded, logged_in_after_activation,
         logout_refuses_old_session, login_wrong_password, login, create_volume,
         write_over_iscsi, dashboard_chart, snapshots, create_tapes, library, other_pages,
         csrf_refused]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=EXPECT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        try:
            s = State(browser)
            for fn in STEPS:
                with step(fn.__name__, s):
                    fn(s)
        except StepFailed:
            return 1
        finally:
            browser.close()
    print(f"console_e2e: all {len(STEPS)} steps passed; screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
