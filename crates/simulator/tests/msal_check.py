"""Fidelity check: Microsoft's own client library (MSAL for Python) against the simulated cloud.

Usage: msal_check.py AUTHORITY_BASE CA_FILE TENANT CLIENT_ID SECRET
Prints one JSON object with what MSAL saw. If MSAL and the simulator disagree, the
simulator is wrong.
"""
import base64
import json
import sys

import msal


def claims(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main():
    base, ca_file, tenant, client_id, secret = sys.argv[1:6]
    authority = f"{base}/{tenant}"
    good = msal.ConfidentialClientApplication(
        client_id, client_credential=secret, authority=authority,
        instance_discovery=False, verify=ca_file)
    result = good.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    out = {"ok": "access_token" in result, "token_type": result.get("token_type"),
           "error": result.get("error"), "error_description": result.get("error_description")}
    if out["ok"]:
        token_claims = claims(result["access_token"])
        out.update(roles=token_claims.get("roles"), tid=token_claims.get("tid"),
                   appid=token_claims.get("appid"), aud=token_claims.get("aud"))
    # MSAL caches app tokens: a second call is served from its cache, not the network.
    again = good.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    out["second_from_cache"] = again.get("token_source") == "cache"

    wrong = msal.ConfidentialClientApplication(
        client_id, client_credential="Wro8Q~definitely-not-the-secret", authority=authority,
        instance_discovery=False, verify=ca_file)
    refused = wrong.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    out["wrong_secret"] = {"error": refused.get("error"), "error_codes": refused.get("error_codes"),
                           "has_trace_id": bool(refused.get("trace_id")),
                           "has_correlation_id": bool(refused.get("correlation_id"))}
    bad_scope = good.acquire_token_for_client(scopes=["https://graph.microsoft.com/User.Read.All"])
    out["bad_scope"] = {"error": bad_scope.get("error"), "error_codes": bad_scope.get("error_codes")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
