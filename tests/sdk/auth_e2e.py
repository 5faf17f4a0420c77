"""Authentication through the example gateway with the official openai SDK.

Usage: auth_e2e.py BASE_URL MASTER_KEY. Creates a key with the admin API, checks that
the openai SDK works with it and that a wrong or revoked key raises AuthenticationError,
and prints `CREATED_KEY=<key>` so the Rust harness can grep logs and the database.
"""
import json
import sys
import time
import urllib.request

import openai

base, master = sys.argv[1], sys.argv[2]


def admin(method, path, body=None, key=master):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


status, created = admin("POST", "/admin/keys", {"name": "sdk", "team": "e2e", "models": ["mock/*"]})
assert status == 201, (status, created)
key = created["key"]
assert key.startswith("tg-"), created
print(f"CREATED_KEY={key}")

client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
reply = client.chat.completions.create(
    model="mock/echo", messages=[{"role": "user", "content": "hello"}]
)
assert reply.choices[0].message.content, reply
chunks = list(
    client.chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": "hello"}], stream=True
    )
)
assert chunks, "no stream chunks"

# A model outside the key's globs: 403.
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("a model outside the key's globs was served")
except openai.PermissionDeniedError as err:
    assert err.status_code == 403

# A wrong key: AuthenticationError.
wrong = openai.OpenAI(base_url=base + "/v1", api_key=key[:-1] + ("A" if key[-1] != "A" else "B"), max_retries=0)
try:
    wrong.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError as err:
    assert err.status_code == 401
    assert err.code == "invalid_api_key", err.body

# The key cannot use the admin API; the master key lists it without its secret.
status, _ = admin("GET", "/admin/keys", key=key)
assert status == 403, status
status, listed = admin("GET", "/admin/keys")
assert status == 200 and key not in json.dumps(listed), listed

# Revoked: refused at once on this replica.
status, _ = admin("DELETE", f"/admin/keys/{created['id']}")
assert status == 200
try:
    client.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("a revoked key was accepted")
except openai.AuthenticationError:
    pass

print("openai SDK auth checks passed")
