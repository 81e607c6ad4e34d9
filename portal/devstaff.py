"""DEV ONLY: a local staff "identity provider" for tests and the demo, `python -m portal.devstaff`.

In production, staff tokens come from the bank's identity provider and the portal only ever sees
its public key set. For tests, the demo and a developer's laptop, this module makes a key pair, the
JSON Web Key Set the portal reads (PORTAL_STAFF_JWKS) and signed staff tokens:

    python -m portal.devstaff init var/dev-staff          # key pair, jwks.json, staff.env
    set -a; . var/dev-staff/staff.env; set +a             # PORTAL_STAFF_JWKS, _ISSUER, _AUDIENCE
    python -m portal.devstaff token var/dev-staff --sub ops-1 --role operator
    python -m portal.devstaff token var/dev-staff --sub AG1-7 --role agency --agency-id AG-1

The private key stays in the folder (mode 0600) and the issuer is under `.invalid` (RFC 2606), so
a token from here can never be mistaken for a real identity provider's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

DEFAULT_ISSUER = "https://staff-idp.dev.invalid/"
DEFAULT_AUDIENCE = "collections-portal"
KEY_FILE = "staff-signing-key.pem"
JWKS_FILE = "jwks.json"
META_FILE = "issuer.json"
ENV_FILE = "staff.env"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class DevStaffIssuer:
    """A folder with a signing key, its JWKS, and the issuer and audience the tokens carry."""

    folder: Path
    issuer: str
    audience: str
    algorithm: str
    kid: str
    private_key: Any

    @property
    def jwks_path(self) -> Path:
        return self.folder / JWKS_FILE

    @classmethod
    def create(cls, folder: str | Path, *, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE,
               algorithm: str = "ES256") -> DevStaffIssuer:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if algorithm == "ES256":
            key: Any = ec.generate_private_key(ec.SECP256R1())
            jwk_alg = jwt.algorithms.ECAlgorithm
        elif algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk_alg = jwt.algorithms.RSAAlgorithm
        else:
            raise ValueError(f"algorithm must be ES256 or RS256, not {algorithm!r}")
        public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = "dev-" + hashlib.sha256(public_der).hexdigest()[:16]
        jwk = json.loads(jwk_alg.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": algorithm})
        _write_private(folder / KEY_FILE, key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
        (folder / JWKS_FILE).write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n", encoding="utf-8")
        meta = {"issuer": issuer, "audience": audience, "algorithm": algorithm, "kid": kid}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        issuer_obj = cls(folder, issuer, audience, algorithm, kid, key)
        issuer_obj._write_env()
        return issuer_obj

    def _write_env(self) -> None:
        (self.folder / ENV_FILE).write_text(
            "# DEV ONLY staff identity provider (python -m portal.devstaff); load with: set -a; . this; set +a\n"
            + "".join(f"{k}={v}\n" for k, v in self.env().items()), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> DevStaffIssuer:
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            key = serialization.load_pem_private_key((folder / KEY_FILE).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder} is not a dev staff issuer (run: python -m portal.devstaff init {folder}): "
                             f"{exc}") from None
        return cls(folder, meta["issuer"], meta["audience"], meta["algorithm"], meta["kid"], key)

    @classmethod
    def ensure(cls, folder: str | Path, **options: Any) -> DevStaffIssuer:
        """The issuer in `folder`, made first if it is not there (atomically: a folder is made beside
        it and renamed, so concurrent callers end up with one and the same key)."""
        folder = Path(folder)
        try:
            return cls.load(folder)
        except ValueError:
            pass
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        cls.create(scratch, **options)
        try:
            scratch.rename(folder)
        except OSError:  # another caller got there first (or a damaged folder is in the way)
            shutil.rmtree(scratch, ignore_errors=True)
            return cls.load(folder)
        issuer = cls.load(folder)
        issuer._write_env()
        return issuer

    def env(self) -> dict[str, str]:
        """The portal's settings that trust this issuer."""
        return {"PORTAL_STAFF_JWKS": str(self.jwks_path.resolve()), "PORTAL_STAFF_ISSUER": self.issuer,
                "PORTAL_STAFF_AUDIENCE": self.audience}

    def token(self, subject: str, role: str, *, agency_id: str | None = None, ttl_seconds: int = 3600,
              **claims: Any) -> str:
        """A signed staff token (`claims` override or add any claim: tests forge bad ones this way)."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject, "role": role,
                                "iat": now, "exp": now + ttl_seconds}
        if agency_id is not None:
            body["agency_id"] = agency_id
        body.update(claims)
        return jwt.encode(body, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.devstaff",
                                     description="DEV ONLY: a local staff identity provider (key set and tokens).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="make a key pair, jwks.json and staff.env in FOLDER")
    p.add_argument("folder")
    p.add_argument("--issuer", default=DEFAULT_ISSUER)
    p.add_argument("--audience", default=DEFAULT_AUDIENCE)
    p.add_argument("--alg", default="ES256", choices=["ES256", "RS256"])
    p = sub.add_parser("token", help="print a staff token signed with FOLDER's key")
    p.add_argument("folder")
    p.add_argument("--sub", required=True, help="the staff member's id (recorded in the loan's events)")
    p.add_argument("--role", required=True, choices=["agent", "agency", "operator"])
    p.add_argument("--agency-id", help="for --role agency: the agency's id (policy.agents.agencies agency_id)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires")
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            issuer = DevStaffIssuer.create(args.folder, issuer=args.issuer, audience=args.audience, algorithm=args.alg)
            print(f"DEV ONLY staff issuer in {issuer.folder}: key {issuer.kid} ({issuer.algorithm})")
            for k, v in issuer.env().items():
                print(f"{k}={v}")
            return 0
        if args.role == "agency" and not args.agency_id:
            print("--role agency needs --agency-id", file=sys.stderr)
            return 2
        issuer = DevStaffIssuer.load(args.folder)
        print(issuer.token(args.sub, args.role, agency_id=args.agency_id, ttl_seconds=args.ttl))
        return 0
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
