"""Operator accounts, roles and sessions; the checks every HTTP route goes through."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from diemcau.http import Problem, unauthorized
from diemcau.tokens import bearer

ROLES = ("viewer", "operator", "admin")
SESSION_COOKIE = "dc_session"
CSRF_HEADER = "X-Diemcau-Request"  # a custom header a cross-site form cannot send


@dataclass(frozen=True)
class Principal:
    user: str
    role: str

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_password(password: str, salt: bytes | None = None) -> dict:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return {"salt": salt.hex(), "hash": digest.hex()}


def check_password(password: str, record: dict) -> bool:
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(record["salt"]), n=2**14, r=8, p=1, dklen=32)
    return hmac.compare_digest(digest.hex(), record["hash"])


class Accounts:
    """Operator accounts and sessions kept in Redis."""

    def __init__(self, redis, prefix: str, session_ttl_s: int, login_attempts_per_min: int = 10) -> None:
        self.r = redis
        self.p = prefix
        self.session_ttl_s = session_ttl_s
        self.login_attempts_per_min = login_attempts_per_min

    async def set_user(self, user: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        record = {"role": role, **hash_password(password)}
        await self.r.hset(self.p + "operators", user, json.dumps(record))

    async def login(self, user: str, password: str) -> tuple[str, Principal]:
        key = f"{self.p}login-attempts:{user}"
        attempts = await self.r.incr(key)
        if attempts == 1:
            await self.r.expire(key, 60)
        if attempts > self.login_attempts_per_min:
            raise Problem(429, "too many login attempts; wait a minute", {"Retry-After": "60"})
        raw = await self.r.hget(self.p + "operators", user)
        if raw is None or not check_password(password, json.loads(raw)):
            raise unauthorized("wrong username or password")
        await self.r.delete(key)
        principal = Principal(user, json.loads(raw)["role"])
        token = "dco1." + secrets.token_urlsafe(32)
        await self.r.set(
            self._session_key(token),
            json.dumps({"user": principal.user, "role": principal.role, "at": time.time()}),
            ex=self.session_ttl_s,
        )
        return token, principal

    async def logout(self, token: str) -> None:
        await self.r.delete(self._session_key(token))

    async def resolve(self, token: str) -> Principal | None:
        raw = await self.r.get(self._session_key(token))
        if raw is None:
            return None
        data = json.loads(raw)
        return Principal(data["user"], data["role"])

    def _session_key(self, token: str) -> str:
        return self.p + "session:" + hashlib.sha256(token.encode()).hexdigest()


async def authenticate(request: web.Request, accounts: Accounts, role: str) -> Principal:
    """The operator behind this request, with at least `role`; raises 401/403 otherwise."""
    token = bearer(request.headers.get("Authorization"))
    via_cookie = False
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        via_cookie = token is not None
    if token is None:
        raise unauthorized("log in first: send a Bearer token or the session cookie")
    principal = await accounts.resolve(token)
    if principal is None:
        raise unauthorized("session is unknown or has expired; log in again")
    if via_cookie and request.method not in ("GET", "HEAD", "OPTIONS") and request.headers.get(CSRF_HEADER) != "1":
        raise Problem(403, f"state-changing requests with a session cookie need the {CSRF_HEADER}: 1 header")
    if not principal.allows(role):
        raise Problem(403, f"role {principal.role} may not do this; it needs {role}")
    return principal
