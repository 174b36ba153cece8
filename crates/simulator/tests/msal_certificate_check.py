"""Fidelity check: MSAL for Python's confidential client with a certificate against the
simulated cloud.

Usage: msal_certificate_check.py AUTHORITY_BASE CA_FILE TENANT CLIENT_ID CERT_PEM KEY_PEM
       OTHER_CERT_PEM OTHER_KEY_PEM
The first pair is registered on the app, the second is not. Prints one JSON object with
what MSAL saw. If MSAL and the simulator disagree, the simulator is wrong.
"""
import base64
import hashlib
import json
import sys

import msal
from cryptography import x509


def claims(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def sha1_thumbprint(cert_pem):
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization",
                            fromlist=["Encoding"]).Encoding.DER)
    return hashlib.sha1(der).hexdigest()


def attempt(authority, ca_file, client_id, credential):
    app = msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=authority,
        instance_discovery=False, verify=ca_file)
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    seen = {"ok": "access_token" in result, "error": result.get("error"),
            "error_codes": result.get("error_codes"),
            "error_description": result.get("error_description")}
    if seen["ok"]:
        token_claims = claims(result["access_token"])
        seen.update(appid=token_claims.get("appid"), appidacr=token_claims.get("appidacr"),
                    tid=token_claims.get("tid"), roles=len(token_claims.get("roles") or []))
    return seen


def main():
    base, ca_file, tenant, client_id, cert, key, other_cert, other_key = sys.argv[1:9]
    read = lambda path: open(path).read()
    cert, key, other_cert, other_key = map(read, (cert, key, other_cert, other_key))
    authority = f"{base}/{tenant}"
    # Register the first certificate, as an administrator does in the portal.
    import requests
    registered = requests.post(f"{base}/_sim/tenants/{tenant}/apps/{client_id}/certificates",
                               json={"pem": cert, "display_name": "msal check"}, verify=ca_file)
    registered.raise_for_status()
    out = {
        "thumbprint": registered.json()["thumbprint"],
        "sha1_thumbprint": sha1_thumbprint(cert).upper(),
        # Newer MSAL: given the public certificate, PS256 with x5t#S256 (and x5c).
        "ps256": attempt(authority, ca_file, client_id,
                         {"private_key": key, "public_certificate": cert}),
        # Given only a SHA-1 thumbprint: RS256 with x5t.
        "rs256": attempt(authority, ca_file, client_id,
                         {"private_key": key, "thumbprint": sha1_thumbprint(cert)}),
        "unregistered": attempt(authority, ca_file, client_id,
                                {"private_key": other_key, "public_certificate": other_cert}),
        # The registered certificate's thumbprint with another key: a bad signature.
        "wrong_key": attempt(authority, ca_file, client_id,
                             {"private_key": other_key, "thumbprint": sha1_thumbprint(cert)}),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
