"""``tenfold orgs create`` / ``tenfold keys create``: a new organization's key works and sees nothing of
the admin's organization; a non-admin key may not create organizations."""

from __future__ import annotations

import json


def test_orgs_and_keys(cli, as_admin, server):
    r = cli("orgs", "create", "acme", "--json", **as_admin)
    assert r.exit_code == 0, r.output
    org = json.loads(r.output)
    assert org["id"].startswith("org-") and org["name"] == "acme"

    r = cli("keys", "create", "--org", org["id"], "--name", "ci", "--json", **as_admin)
    assert r.exit_code == 0, r.output
    key = json.loads(r.output)
    assert key["key"].startswith("tf-") and key["organization_id"] == org["id"] and not key["is_admin"]

    env = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": key["key"]}
    r = cli("jobs", "list", "--json", **env)
    assert r.exit_code == 0 and json.loads(r.output)["data"] == []
    r = cli("orgs", "create", "nope", **env)
    assert r.exit_code == 1 and "admin" in r.output
    r = cli("keys", "create", "--org", "org-missing", **as_admin)
    assert r.exit_code == 1 and "org-missing" in r.output
