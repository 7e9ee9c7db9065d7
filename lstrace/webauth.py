"""HTTP basic auth against the web config's bcrypt hashes (python3-bcrypt).

As the exporter-toolkit does: one bcrypt check at a time (it is meant to be
slow: ~60 ms at cost 10), its result cached per (user, hash, password) so a
scraper sending the same credentials every 15 s costs a dictionary look-up,
and an unknown user checked against a real hash too, so the answer's timing
does not tell which user names exist.  The cache is bounded (CACHE_SIZE
entries; a tenth is dropped when it is full)."""
import base64
import binascii
import itertools
import threading

import bcrypt

CACHE_SIZE = 100


class BasicAuth:
    def __init__(self):
        self._cache = {}
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def check(self, users, authorization):
        """True if the Authorization header value names a user of `users`
        (name -> bcrypt hash bytes) with the right password."""
        creds = _parse(authorization)
        if creds is None or not users:
            return False
        user, password = creds
        hashed = users.get(user)
        known = hashed is not None
        if not known:
            hashed = next(iter(users.values()))      # same cost, result ignored
        key = (user, hashed, password)
        with self._cache_lock:
            ok = self._cache.get(key)
        if ok is None:
            with self._bcrypt_lock:
                try:
                    ok = bcrypt.checkpw(password, hashed)
                except ValueError:           # a hash load() let through: refuse
                    ok = False
            ok = ok and known
            with self._cache_lock:
                if len(self._cache) >= CACHE_SIZE:
                    for k in list(itertools.islice(self._cache, CACHE_SIZE // 10)):
                        del self._cache[k]
                self._cache[key] = ok
        return ok and known


def _parse(authorization):
    """'Basic base64(user:password)' -> (user str, password bytes), or None."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password
