"""One small HTTP boundary: timeouts, retries, paging, precise errors, a read-only guard.

Every request goes through ``HttpClient.send``: it adds the bearer token for the resource,
bounds concurrency per environment, retries 429 / 5xx / connection errors (honouring
``Retry-After`` within a cap and a total budget, exponential backoff with jitter otherwise),
re-acquires the token once on 401, and turns any other failure into ``ApiError``.
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import requests

from cleanup import json_text
from cleanup.config import HttpSettings
from cleanup.errors import ApiError, ReadOnlyViolation, ThrottledError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_THROTTLED_RETRIES = 1000  # a guard only; retry_budget_seconds is the real bound
REQUEST_ID_HEADERS = ("x-ms-service-request-id", "x-ms-request-id", "request-id", "REQ_ID")
USER_AGENT = "connref-cleanup"
ODATA_SAFE = "$,'()@:/*=-"


class VerifyingSession(requests.Session):
    """A session that always verifies TLS and reads proxies and CA bundle from the environment once.

    requests would read the environment on every request (it scans ``os.environ`` twice per
    request) and let a ``~/.netrc`` entry replace the Authorization header (a bearer token, or
    msal's client credentials). Here: the configured CA, else ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE`` as requests would use them; proxies per origin from ``HTTPS_PROXY`` and
    ``NO_PROXY``.
    """

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self.trust_env = False
        self._verify = verify if verify is not True else (_environment_ca_bundle() or True)
        self._proxies: dict[str, dict[str, str]] = {}

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        """Send a request, forcing the configured verification (environment cannot weaken it)."""
        kwargs["verify"] = self._verify
        text = url if isinstance(url, str) else url.decode()
        kwargs.setdefault("proxies", self.proxies_for(text))
        return super().request(method, url, *args, **kwargs)

    def proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for the URL's origin (none where NO_PROXY says so)."""
        origin = "/".join(url.split("/", 3)[:3])
        proxies = self._proxies.get(origin)
        if proxies is None:
            proxies = requests.utils.get_environ_proxies(origin)
            self._proxies[origin] = proxies
        return proxies


def _environment_ca_bundle() -> str | None:
    """The CA bundle the environment names for requests, if any."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


# A page body -> (what to yield for the page, the next page's link or None).
PageDecoder = Callable[[bytes], tuple[Any, str | None]]


class TokenSource(Protocol):
    """What the HTTP client needs from authentication."""

    def token(self, scope: str) -> str:
        """Return a bearer token for ``scope``."""
        ...

    def invalidate(self, scope: str) -> None:
        """Forget the cached token for ``scope`` (it was rejected)."""
        ...


@dataclass
class Usage:
    """Requests and bytes spent, by tag (usually an environment id) and by table."""

    requests: Counter[str]
    bytes: Counter[str]
    by_table: Counter[str]
    throttled: int = 0
    # (tag, table) -> requests and bytes: what one stage spent when stages overlap
    by_tag_table: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes_by_tag_table: Counter[tuple[str, str]] = field(default_factory=Counter)

    def without_table(self, table: str) -> Usage:
        """These counts less what was spent on ``table`` (another stage's requests)."""
        sent, size = Counter(self.requests), Counter(self.bytes)
        for (tag, name), count in self.by_tag_table.items():
            if name == table:
                sent[tag] -= count
                size[tag] -= self.bytes_by_tag_table[(tag, name)]
        by_table = Counter({name: n for name, n in self.by_table.items() if name != table})
        return Usage(+sent, +size, by_table, self.throttled)


class HttpClient:
    """A requests session with the project's rules for talking to Microsoft APIs."""

    def __init__(
        self,
        settings: HttpSettings,
        tokens: TokenSource,
        *,
        ca_bundle: str = "",
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        # Verification is always on: the session forces the CA on every request.
        self.session = VerifyingSession(ca_bundle or True)
        # One pooled connection per possible concurrent request, so none is opened and discarded.
        pool = settings.parallel_environments * max(settings.concurrency_per_environment, 5)
        self.session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=pool))
        self.session.headers["User-Agent"] = USER_AGENT
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._writes_allowed = False
        self._limiters: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self.usage = Usage(Counter(), Counter(), Counter())

    @contextmanager
    def writes_enabled(self) -> Iterator[None]:
        """Allow non-GET requests inside this block (apply only)."""
        self._writes_allowed = True
        try:
            yield
        finally:
            self._writes_allowed = False

    def get_json(self, url: str, *, scope: str, tag: str = "", table: str = "", **kw: Any) -> Any:
        """GET ``url`` and return its JSON body."""
        response = self.send("GET", url, scope=scope, tag=tag, table=table, **kw)
        return _json_body(response, "GET", url)

    def send(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        tag: str = "",
        table: str = "",
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        retry_on_timeout: bool | None = None,
    ) -> requests.Response:
        """Send one logical request (with retries) and return the successful response."""
        if method != "GET" and not self._writes_allowed:
            raise ReadOnlyViolation(
                f"Refused {method} {url}: this run is read-only. Only 'connref-cleanup apply' "
                "with a reviewed plan may change anything."
            )
        if retry_on_timeout is None:
            retry_on_timeout = method == "GET"
        attempt = 0
        slept = 0.0
        reauthenticated = False
        while True:
            try:
                response = self._send_once(
                    method, url, scope, tag, table, params, headers, json_body
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # not transient: say what to do
                    raise ApiError(
                        "The server's TLS certificate could not be verified. If a proxy or a "
                        "private CA signs it, set endpoints.ca_bundle (or REQUESTS_CA_BUNDLE) to "
                        "that CA's PEM file; verification is never switched off",
                        method=method,
                        url=url,
                    ) from exc
                if not retry_on_timeout or attempt >= self.settings.max_retries:
                    raise ApiError(
                        f"No answer ({type(exc).__name__}); check the network or raise "
                        "http.timeout_seconds",
                        method=method,
                        url=url,
                    ) from exc
                delay = self._backoff(attempt)
            else:
                if response.status_code < 400:
                    return response
                if response.status_code == 401 and not reauthenticated:
                    # A cached token can be revoked or expire early: get a fresh one once.
                    self.tokens.invalidate(scope)
                    reauthenticated = True
                    continue
                if response.status_code not in RETRY_STATUSES:
                    raise api_error(response, method, url)
                throttled = response.status_code == 429
                if throttled:
                    with self._lock:
                        self.usage.throttled += 1
                # Throttling is the service asking us to wait, not a failure: only the time
                # budget bounds it. Other errors also have a count limit.
                limit = MAX_THROTTLED_RETRIES if throttled else self.settings.max_retries
                if attempt >= limit:
                    raise api_error(response, method, url, throttled=throttled)
                delay = self._retry_delay(response, attempt)
            if slept + delay > self.settings.retry_budget_seconds:
                raise ThrottledError(
                    "Gave up: the retry budget (http.retry_budget_seconds) is spent; the service "
                    "is throttling or failing. Run again later or lower concurrency.",
                    method=method,
                    url=url,
                )
            self._sleep(delay)
            slept += delay
            attempt += 1

    def _send_once(
        self,
        method: str,
        url: str,
        scope: str,
        tag: str,
        table: str,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        json_body: Any,
    ) -> requests.Response:
        all_headers = {"Authorization": f"Bearer {self.tokens.token(scope)}"}
        all_headers.update(headers or {})
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{encode_query(params)}"
        with self._limiter(tag):
            response = self.session.request(
                method,
                url,
                headers=all_headers,
                json=json_body,
                timeout=self.settings.timeout_seconds,
            )
        with self._lock:
            self.usage.requests[tag] += 1
            self.usage.bytes[tag] += len(response.content)
            if table:
                self.usage.by_table[table] += 1
                self.usage.by_tag_table[(tag, table)] += 1
                self.usage.bytes_by_tag_table[(tag, table)] += len(response.content)
        return response

    def _limiter(self, tag: str) -> threading.BoundedSemaphore:
        with self._lock:
            limiter = self._limiters.get(tag)
            if limiter is None:
                limiter = threading.BoundedSemaphore(self.settings.concurrency_per_environment)
                self._limiters[tag] = limiter
            return limiter

    def _retry_delay(self, response: requests.Response, attempt: int) -> float:
        retry_after = response.headers.get("Retry-After", "")
        try:
            seconds = float(retry_after)
        except ValueError:
            return self._backoff(attempt)
        return max(0.0, min(seconds, self.settings.retry_after_cap_seconds))

    def _backoff(self, attempt: int) -> float:
        ceiling = min(
            self.settings.retry_after_cap_seconds, self.settings.backoff_base_seconds * 2**attempt
        )
        # Full jitter: spreads retries of parallel workers instead of synchronising them.
        return self._rng.uniform(ceiling / 2, ceiling)

    def odata_pages(
        self,
        url: str,
        *,
        scope: str,
        params: dict[str, str],
        tag: str,
        table: str,
        decode: PageDecoder = json_text.odata_page,
    ) -> Iterator[Any]:
        """Yield the pages of a Dataverse collection, following @odata.nextLink unchanged.

        ``decode`` turns a page's body into what is yielded and the next link (by default the
        ``value`` list); a ValueError from it is reported as an unreadable answer.
        """
        headers = {
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "Prefer": f'odata.maxpagesize={self.settings.page_size},odata.include-annotations="*"',
        }
        return self._pages(url, params, headers, decode, scope=scope, tag=tag, table=table)

    def arm_pages(
        self, url: str, *, scope: str, params: dict[str, str], tag: str, table: str
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the pages of an ARM-style collection, following ``nextLink``."""
        arm_page = functools.partial(json_text.odata_page, link_key="nextLink")
        return self._pages(url, params, {}, arm_page, scope=scope, tag=tag, table=table)

    def _pages(
        self,
        url: str,
        params: dict[str, str],
        headers: dict[str, str],
        decode: PageDecoder,
        **route: str,
    ) -> Iterator[Any]:
        """Follow a collection's next links; ``route`` is ``send``'s scope, tag and table."""
        next_url: str | None = url
        next_params: dict[str, str] | None = params
        while next_url:
            response = self.send("GET", next_url, params=next_params, headers=headers, **route)
            try:
                page, link = decode(response.content)
            except ValueError as exc:
                raise ApiError(
                    f"The service answered with {exc}",
                    status=response.status_code,
                    url=next_url,
                    request_id=_request_id(response),
                ) from None
            del response  # the body can be megabytes: let it go before the next page arrives
            yield page
            next_url = link
            next_params = None  # the next link already carries every query option


def encode_query(params: dict[str, str]) -> str:
    """Encode query options the way OData documents them: ``$select=a,b&$filter=x eq 'y'``.

    Spaces become ``%20`` (never ``+``) and OData punctuation stays literal, so a server that
    reads the raw query string sees what the documentation shows.
    """
    return "&".join(
        f"{quote(key, safe='$@')}={quote(value, safe=ODATA_SAFE)}" for key, value in params.items()
    )


def _json_body(response: requests.Response, method: str, url: str) -> Any:
    try:
        return json_text.loads(response.content)
    except ValueError:
        raise ApiError(
            "The service answered with a body that is not valid JSON",
            status=response.status_code,
            method=method,
            url=url,
            request_id=_request_id(response),
        ) from None


def _request_id(response: requests.Response) -> str | None:
    for header in REQUEST_ID_HEADERS:
        if header in response.headers:
            return response.headers[header]
    return None


def api_error(
    response: requests.Response, method: str, url: str, *, throttled: bool = False
) -> ApiError:
    """Turn an error response into an ``ApiError`` with the service's code and message."""
    code, message = None, ""
    try:
        err = response.json().get("error", {})
        if isinstance(err, dict):
            code = err.get("code") or None
            message = str(err.get("message") or "")
    except (ValueError, AttributeError):
        message = response.text[:200]
    cls = ThrottledError if throttled else ApiError
    return cls(
        message or response.reason or "request failed",
        status=response.status_code,
        code=code,
        method=method,
        url=url.split("?")[0],
        request_id=_request_id(response),
    )


def dumps_compact(value: Any) -> str:
    """Serialise JSON the way Dataverse stores clientdata (no spaces)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
