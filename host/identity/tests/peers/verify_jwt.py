#!/usr/bin/env python3
"""An independent verifier (PyJWT) for Airlock's tokens.

Usage: verify_jwt.py JWKS_FILE TOKEN_FILE AUDIENCE ISSUER
Reads a JSON Web Key Set and a compact JWT, verifies the token with the key its
`kid` names (EdDSA only, audience and issuer checked, exp/nbf/iat/jti required),
and prints the verified claims as JSON on stdout. Exits non-zero, with the
reason on stderr, when the token does not verify.
"""
import json
import sys

import jwt


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    jwks_path, token_path, audience, issuer = sys.argv[1:]
    with open(jwks_path, encoding="utf-8") as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    with open(token_path, encoding="utf-8") as f:
        token = f.read().strip()
    kid = jwt.get_unverified_header(token).get("kid")
    try:
        key = jwks[kid]
    except KeyError:
        print(f"no key with kid {kid!r} in the key set", file=sys.stderr)
        return 1
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
        )
    except jwt.InvalidTokenError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
