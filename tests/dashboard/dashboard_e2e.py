"""Drives the dashboard (/admin/ui) of a running example gateway in headless Chromium.

Usage: dashboard_e2e.py GATEWAY_URL MASTER_KEY ARTIFACT_DIR CANARY

Scripted traffic first (through the gateway's own API), then the browser: a wrong key
sees nothing, the right one sees the overview with the numbers the traffic made; spend
per team; a key created in the page works, and stops working once revoked there; the
request list; the channels page. Screenshots go to ARTIFACT_DIR. No page ever holds a
key hash, a created key after it was dismissed, or the upstream canary key.
"""

import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

URL, MASTER, ARTIFACTS, CANARY = sys.argv[1:5]
CHROMIUM = os.environ.get("TOLLGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TOLLGATE_CHROMEDRIVER", "/usr/bin/chromedriver")


def call(method, path, key, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("authorization", "Bearer " + key)
    if data is not None:
        req.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def chat(key, content, headers=None):
    body = {"model": "mock/echo", "temperature": 0,
            "messages": [{"role": "user", "content": content}]}
    return call("POST", "/v1/chat/completions", key, body, headers)


def usage_totals():
    status, body = call("GET", "/admin/usage", MASTER)
    assert status == 200, body
    return body["data"][0] if body["data"] else {"requests": 0}


def wait_for(predicate, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


# ---- scripted traffic ---------------------------------------------------------

status, app_key = call("POST", "/admin/keys", MASTER, {"name": "traffic", "team": "red"})
assert status == 201, app_key
traffic_key = app_key["key"]
for i in range(3):
    status, body = chat(traffic_key, f"question {i}")
    assert status == 200, body
status, _ = chat(traffic_key, "question 0")  # identical and deterministic: a cache hit
assert status == 200
status, body = chat(traffic_key, "this one fails", {"x-mock-status": "500"})
assert status == 502, (status, body)  # an upstream 5xx is a 502 at the gateway
totals = wait_for(lambda: (t := usage_totals())["requests"] >= 5 and t, "5 metered requests")
assert totals["requests"] == 5, totals
assert totals["errors"] == 1 and totals["cache_hits"] == 1, totals
print("traffic:", json.dumps(totals))

# ---- the browser ----------------------------------------------------------------

options = Options()
options.binary_location = CHROMIUM
profile = tempfile.mkdtemp(prefix="tollgate-chromium-")
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
             "--window-size=1280,1000", f"--user-data-dir={profile}"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
# Tables are re-rendered after every action: an element found just before may be stale.
wait = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
pages_seen = []


def loaded(page):
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == page)
    pages_seen.append(driver.page_source)


def go(page):
    driver.execute_script("document.body.dataset.loaded = ''")
    driver.get(f"{URL}/admin/ui#{page}")
    driver.refresh()  # a hash change alone does not reload; the key stays in sessionStorage
    loaded(page)


def text(element_id):
    return driver.find_element(By.ID, element_id).text


def shot(name):
    path = os.path.join(ARTIFACTS, name + ".png")
    assert driver.save_screenshot(path), path
    print("screenshot:", path)


def log_in(key):
    driver.execute_script("document.body.dataset.loaded = ''")
    field = driver.find_element(By.ID, "login-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()


try:
    # A wrong key sees nothing but the login form and the refusal.
    driver.get(URL + "/admin/ui")
    loaded("login")
    log_in("tg-not-a-real-key-000000000000")
    loaded("login")
    assert "may not use the admin API" in text("login-error"), text("login-error")
    assert not driver.find_element(By.ID, "nav").is_displayed()
    assert not driver.find_element(By.ID, "overview").is_displayed()
    # A developer key is a real key, but not an admin one.
    log_in(traffic_key)
    loaded("login")
    assert "role" in text("login-error"), text("login-error")
    assert text("stat-requests") in ("", "-"), "no figures before logging in"
    shot("login-refused")

    # The overview matches the scripted traffic.
    log_in(MASTER)
    loaded("overview")
    assert text("stat-requests") == "5", text("stat-requests")
    tokens = totals["prompt_tokens"] + totals["completion_tokens"]
    assert text("stat-tokens") == f"{tokens:,}", (text("stat-tokens"), tokens)
    assert text("stat-cost") == f"{float(totals['cost']):.6f}", (text("stat-cost"), totals)
    assert text("stat-errors") == "20.0%", text("stat-errors")
    assert text("stat-cache") == "20.0%", text("stat-cache")
    bars = driver.find_elements(By.CSS_SELECTOR, "#chart-requests rect.bar-main")
    assert len(bars) >= 7, "one bar per day of the range"
    assert any(float(b.get_attribute("height")) > 0 for b in bars)
    Select(driver.find_element(By.ID, "overview-range")).select_by_value("24h")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-requests rect.bar-main")) >= 24)
    shot("overview")

    # Spend per team: all of it is team red's.
    go("spend")
    rows = driver.find_elements(By.CSS_SELECTOR, "#spend-table tbody tr")
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "red" and cells[1] == "5", cells
    shot("spend")

    # Keys: create one in the page, use it, revoke it in the page.
    go("keys")
    driver.find_element(By.ID, "key-name").send_keys("browser-made")
    driver.find_element(By.ID, "key-team").send_keys("blue")
    driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(EC.visibility_of_element_located((By.ID, "secret")))
    created = text("secret-value")
    assert created.startswith("tg-"), created
    shot("key-created")
    status, body = chat(created, "hello from the browser's key")
    assert status == 200, body
    driver.find_element(By.ID, "secret-done").click()
    assert text("secret-value") == ""
    row = wait.until(lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#keys-table tbody tr")
                                if "browser-made" in r.text])[0]
    key_id = row.get_attribute("data-key-id")
    row.find_element(By.CSS_SELECTOR, "button[data-action=revoke]").click()
    wait.until(lambda d: "revoked" in d.find_element(
        By.CSS_SELECTOR, f"tr[data-key-id='{key_id}']").text)
    status, body = chat(created, "after revocation")
    assert status == 401, (status, body)
    shot("key-revoked")

    # Recent requests, newest first: the browser key's request on top (the refusal of
    # the revoked key happens before metering, so it is not a usage record).
    wait_for(lambda: usage_totals()["requests"] >= 6, "6 metered requests")
    go("requests")
    rows = driver.find_elements(By.CSS_SELECTOR, "#requests-table tbody tr")
    assert len(rows) == 6, len(rows)
    assert key_id in rows[0].text and "blue" in rows[0].text, rows[0].text
    assert "502" in rows[1].text, rows[1].text
    shot("requests")

    # Channels: the mock's three, healthy; disabling one in the page takes it out of
    # routing at once, enabling it brings it back.
    go("channels")
    rows = driver.find_elements(By.CSS_SELECTOR, "#channels-table tbody tr")
    ids = [r.get_attribute("data-channel-id") for r in rows]
    assert {"mock", "mock-anthropic", "mock-gemini"} <= set(ids), ids
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-channel-id='mock']")
    assert "healthy" in row.text and "closed" in row.text, row.text
    row.find_element(By.CSS_SELECTOR, "button[data-action=disable]").click()
    state = "tr[data-channel-id='mock'] td[data-field=state]"
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, state).text == "disabled")
    status, body = chat(traffic_key, "while the channel is off")
    assert status == 503, (status, body)
    shot("channel-disabled")
    driver.find_element(By.CSS_SELECTOR, "tr[data-channel-id='mock'] button[data-action=enable]").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, state).text == "enabled")
    status, body = chat(traffic_key, "back on")
    assert status == 200, (status, body)
    shot("channels")

    # Nothing secret was ever on a page: no hash of either client key, no upstream key,
    # and the created key only while its one-time box was open.
    page_text = "\n".join(pages_seen + [driver.page_source])
    for secret in (traffic_key, created):
        assert hashlib.sha256(secret.encode()).hexdigest() not in page_text
    assert traffic_key not in page_text
    assert CANARY not in page_text
    status, body = call("GET", "/admin/keys", MASTER)
    assert created not in json.dumps(body) and traffic_key not in json.dumps(body)
finally:
    driver.quit()

print("dashboard checks passed")
