"""The CEL function library the kube-apiserver offers to CRD validation rules.

Mirrors k8s.io/apiserver/pkg/cel/library (urls.go, ip.go, cidr.go, regex.go, lists.go) plus cel-go's
standard functions and strings extension (ext/strings.go) that rules in the HyperShift / Cluster API
CRDs use. A function that is not listed here makes the rule "skipped" (never guessed).

Values are plain Python (see cel_eval); URL/IP/CIDR are small wrapper classes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import re
import urllib.parse
from typing import Any, Callable

from hcpsim.apiserver.validation.cel_eval import (
    NONE,
    CelError,
    FunctionTable,
    Optional_,
    _check_int,
    _lt,
    cel_eq,
    type_name,
)

try:  # google-re2 (a celpy dependency) gives the exact RE2 semantics Go uses
    import re2 as _re2
except ImportError:  # pragma: no cover
    _re2 = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# regex


_regex_cache: dict[str, Any] = {}


def compile_regex(pattern: str) -> Any:
    rx = _regex_cache.get(pattern)
    if rx is None:
        try:
            rx = _re2.compile(pattern) if _re2 is not None else re.compile(pattern)
        except Exception:
            try:
                rx = re.compile(pattern)
            except re.error as ex:
                raise CelError(f"invalid regular expression: {pattern}: {ex}") from None
        _regex_cache[pattern] = rx
    return rx


def _s(v: Any) -> str:
    if not isinstance(v, str):
        raise CelError(f"no such overload: expected string, got {type_name(v)}")
    return v


def _i(v: Any) -> int:
    if type(v) is not int:
        raise CelError(f"no such overload: expected int, got {type_name(v)}")
    return v


def matches(s: Any, pattern: Any) -> bool:
    return compile_regex(_s(pattern)).search(_s(s)) is not None


def find(s: Any, pattern: Any) -> str:
    m = compile_regex(_s(pattern)).search(_s(s))
    return m.group(0) if m else ""


def find_all(s: Any, pattern: Any, limit: Any = -1) -> list[str]:
    out = [m.group(0) for m in compile_regex(_s(pattern)).finditer(_s(s))]
    n = _i(limit)
    return out if n < 0 else out[:n]


# ---------------------------------------------------------------------------------------------
# cel-go standard functions


def size(v: Any) -> int:
    if isinstance(v, (str, bytes, list, dict)):
        return len(v)
    raise CelError(f"no such overload: size({type_name(v)})")


def contains(s: Any, sub: Any) -> bool:
    return _s(sub) in _s(s)


def starts_with(s: Any, p: Any) -> bool:
    return _s(s).startswith(_s(p))


def ends_with(s: Any, p: Any) -> bool:
    return _s(s).endswith(_s(p))


def to_int(v: Any) -> int:
    if type(v) is int:
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise CelError("integer overflow")
        return _check_int(int(v))
    if isinstance(v, str):
        try:
            if "_" in v or v.strip() != v:  # Go strconv.ParseInt rejects what Python tolerates
                raise ValueError(v)
            return _check_int(int(v, 10))
        except ValueError:
            raise CelError(f"cannot convert '{v}' to int") from None
    if isinstance(v, _dt.datetime):
        return int(v.timestamp())
    raise CelError(f"no such overload: int({type_name(v)})")


def to_double(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise CelError(f"cannot convert '{v}' to double") from None
    raise CelError(f"no such overload: double({type_name(v)})")


def to_string(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v)) if abs(v) < 1e21 else repr(v)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, (URL, IP, CIDR)):
        return str(v)
    if isinstance(v, _dt.timedelta):
        return format_duration(v)
    if isinstance(v, _dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ") if not v.microsecond else v.isoformat().replace("+00:00", "Z")
    raise CelError(f"no such overload: string({type_name(v)})")


def to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        if v in ("true", "True", "TRUE", "t", "1"):
            return True
        if v in ("false", "False", "FALSE", "f", "0"):
            return False
    raise CelError(f"no such overload: bool({type_name(v)})")


def to_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return _s(v).encode("utf-8")


_DUR_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(s: str) -> _dt.timedelta:
    """Go time.ParseDuration, which CEL's duration() uses."""
    orig = s
    neg = s.startswith("-")
    s = s.lstrip("+-")
    if s == "0":
        return _dt.timedelta(0)
    if not s:
        raise CelError(f"invalid duration: {orig}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DUR_RE.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise CelError(f"invalid duration: {orig}")
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    return _dt.timedelta(seconds=-total if neg else total)


def format_duration(d: _dt.timedelta) -> str:
    secs = d.total_seconds()
    return f"{int(secs)}s" if secs.is_integer() else f"{secs}s"


def to_duration(v: Any) -> _dt.timedelta:
    if isinstance(v, _dt.timedelta):
        return v
    return parse_go_duration(_s(v))


def parse_rfc3339(s: str) -> _dt.datetime:
    try:
        text = s.replace("z", "Z")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        ts = _dt.datetime.fromisoformat(text)
        if ts.tzinfo is None or "T" not in s.upper():
            raise ValueError(s)
        return ts
    except ValueError:
        raise CelError(f'timestamp("{s}") error: invalid RFC 3339 timestamp') from None


def to_timestamp(v: Any) -> _dt.datetime:
    if isinstance(v, _dt.datetime):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return _dt.datetime.fromtimestamp(v, _dt.timezone.utc)
    return parse_rfc3339(_s(v))


def get_seconds(v: Any) -> int:
    if isinstance(v, _dt.timedelta):
        return int(v.total_seconds())
    if isinstance(v, _dt.datetime):
        return v.astimezone(_dt.timezone.utc).second
    raise CelError(f"no such overload: getSeconds({type_name(v)})")


def get_minutes(v: Any) -> int:
    if isinstance(v, _dt.timedelta):
        return int(v.total_seconds() // 60) if v.total_seconds() >= 0 else -int(-v.total_seconds() // 60)
    if isinstance(v, _dt.datetime):
        return v.astimezone(_dt.timezone.utc).minute
    raise CelError(f"no such overload: getMinutes({type_name(v)})")


def get_hours(v: Any) -> int:
    if isinstance(v, _dt.timedelta):
        return int(v.total_seconds() / 3600)
    if isinstance(v, _dt.datetime):
        return v.astimezone(_dt.timezone.utc).hour
    raise CelError(f"no such overload: getHours({type_name(v)})")


def get_milliseconds(v: Any) -> int:
    if isinstance(v, _dt.timedelta):
        return int(v.total_seconds() * 1000)
    if isinstance(v, _dt.datetime):
        return v.microsecond // 1000
    raise CelError(f"no such overload: getMilliseconds({type_name(v)})")


# ---------------------------------------------------------------------------------------------
# strings extension (cel-go ext/strings.go)


def lower_ascii(s: Any) -> str:
    return "".join(c.lower() if c.isascii() else c for c in _s(s))


def upper_ascii(s: Any) -> str:
    return "".join(c.upper() if c.isascii() else c for c in _s(s))


def split(s: Any, sep: Any, n: Any = -1) -> list[str]:
    text, sep_, lim = _s(s), _s(sep), _i(n)
    if lim == 0:
        return []
    if sep_ == "":  # Go strings.SplitN with empty separator splits into UTF-8 characters
        chars = list(text)
        if lim > 0 and len(chars) > lim:
            chars = chars[: lim - 1] + ["".join(chars[lim - 1 :])]
        return chars
    return text.split(sep_) if lim < 0 else text.split(sep_, lim - 1)


def join(items: Any, sep: Any = "") -> str:
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise CelError("no such overload: join")
    return _s(sep).join(items)


def replace(s: Any, old: Any, new: Any, n: Any = -1) -> str:
    lim = _i(n)
    return _s(s).replace(_s(old), _s(new), lim if lim >= 0 else -1)


def index_of(recv: Any, sub: Any, offset: Any = 0) -> int:
    if isinstance(recv, list):  # lists extension indexOf
        for i, x in enumerate(recv):
            if cel_eq(x, sub):
                return i
        return -1
    text, off = _s(recv), _i(offset)
    if off < 0 or off > len(text):
        raise CelError(f"index out of range: {off}")
    return text.find(_s(sub), off)


def last_index_of(recv: Any, sub: Any, offset: Any = None) -> int:
    if isinstance(recv, list):
        for i in range(len(recv) - 1, -1, -1):
            if cel_eq(recv[i], sub):
                return i
        return -1
    text = _s(recv)
    if offset is None:
        return text.rfind(_s(sub))
    off = _i(offset)
    if off < 0 or off > len(text):
        raise CelError(f"index out of range: {off}")
    return text.rfind(_s(sub), 0, off + len(_s(sub)))


def substring(s: Any, start: Any, end: Any = None) -> str:
    text, a = _s(s), _i(start)
    b = len(text) if end is None else _i(end)
    if a < 0 or a > len(text) or b < a or b > len(text):
        raise CelError(f"index out of range: {a}" if a < 0 or a > len(text) else f"index out of range: {b}")
    return text[a:b]


def trim(s: Any) -> str:
    return _s(s).strip()


def char_at(s: Any, i: Any) -> str:
    text, idx = _s(s), _i(i)
    if idx < 0 or idx > len(text):
        raise CelError(f"index out of range: {idx}")
    return text[idx : idx + 1]


def reverse(s: Any) -> Any:
    if isinstance(s, list):
        return list(reversed(s))
    return _s(s)[::-1]


def str_format(fmt: Any, args: Any) -> str:
    """Subset of ext strings `format`: %s, %d and %%; any other verb is an error, not a guess."""
    text = _s(fmt)
    if not isinstance(args, list):
        raise CelError("no such overload: format")
    out: list[str] = []
    i = argi = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        verb = text[i + 1 : i + 2]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            raise CelError("index out of range in format")
        arg = args[argi]
        argi += 1
        if verb == "s":
            out.append(_format_s(arg))
        elif verb == "d" and type(arg) is int:
            out.append(str(arg))
        else:
            raise CelError(f"unsupported format verb %{verb}")
    return "".join(out)


def _format_s(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_format_s(x) for x in v) + "]"
    if v is None:
        return "null"
    return to_string(v)


def quote(s: Any) -> str:
    import json

    return json.dumps(_s(s), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# lists extension (k8s.io/apiserver/pkg/cel/library/lists.go)


def is_sorted(items: Any) -> bool:
    lst = _list(items)
    return all(not _lt(lst[i + 1], lst[i]) for i in range(len(lst) - 1))


def list_sum(items: Any) -> Any:
    lst = _list(items)
    if not lst:
        return 0
    total = lst[0]
    for x in lst[1:]:
        from hcpsim.apiserver.validation.cel_eval import _add

        total = _add(total, x)
    return total


def list_min(items: Any) -> Any:
    lst = _list(items)
    if not lst:
        raise CelError("min called on empty list")
    best = lst[0]
    for x in lst[1:]:
        if _lt(x, best):
            best = x
    return best


def list_max(items: Any) -> Any:
    lst = _list(items)
    if not lst:
        raise CelError("max called on empty list")
    best = lst[0]
    for x in lst[1:]:
        if _lt(best, x):
            best = x
    return best


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise CelError(f"no such overload: expected list, got {type_name(v)}")
    return v


# ---------------------------------------------------------------------------------------------
# URL library (k8s.io/apiserver/pkg/cel/library/urls.go): url(), isURL(), getScheme()...
# url() accepts what Go's url.ParseRequestURI accepts: an absolute URI, or an absolute path.


class URL:
    cel_type = "kubernetes.URL"

    def __init__(self, raw: str, parts: urllib.parse.SplitResult) -> None:
        self.raw = raw
        self.parts = parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __str__(self) -> str:
        return self.raw


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


def _parse_request_uri(s: str) -> URL | None:
    # Go url.ParseRequestURI: no fragment allowed (the '#' stays in the path), must be absolute URI
    # or start with '/'; control characters and spaces in the host are errors.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in s) or s == "":
        return None
    if s.startswith("/"):
        parts = urllib.parse.urlsplit(s, allow_fragments=False)
        return URL(s, parts)
    colon = s.find(":")
    if colon <= 0 or not _SCHEME_RE.match(s[:colon]):
        return None
    parts = urllib.parse.urlsplit(s, allow_fragments=False)
    rest = s[colon + 1 :]
    if not rest.startswith("/") and not rest:
        return None
    if rest.startswith("//"):
        host = parts.netloc.rsplit("@", 1)[-1]
        if " " in host or re.search(r"%(?![0-9A-Fa-f]{2})", host):
            return None
        port = host.rsplit("]", 1)[-1].partition(":")[2] if ":" in host.rsplit("]", 1)[-1] else ""
        if port and not port.isdigit():
            return None
    if "%" in s and re.search(r"%(?![0-9A-Fa-f]{2})", s):
        return None
    return URL(s, parts)


def url(s: Any) -> URL:
    u = _parse_request_uri(_s(s))
    if u is None:
        raise CelError(f"URL parse error during conversion from string: {s}")
    return u


def is_url(s: Any) -> bool:
    return _parse_request_uri(_s(s)) is not None


def _u(v: Any) -> URL:
    if not isinstance(v, URL):
        raise CelError(f"no such overload: expected URL, got {type_name(v)}")
    return v


def get_scheme(u: Any) -> str:
    return _u(u).parts.scheme


def get_host(u: Any) -> str:
    return _u(u).parts.netloc.rsplit("@", 1)[-1]


def get_hostname(u: Any) -> str:
    host = get_host(u)
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.partition(":")[0]


def get_port(u: Any) -> str:
    host = get_host(u)
    if host.startswith("["):
        tail = host[host.find("]") + 1 :] if "]" in host else ""
        return tail[1:] if tail.startswith(":") else ""
    return host.partition(":")[2]


def get_escaped_path(u: Any) -> str:
    return _u(u).parts.path


def get_query(u: Any) -> dict[str, list[str]]:
    q = _u(u).parts.query
    return {k: v for k, v in urllib.parse.parse_qs(q, keep_blank_values=True).items()}


# ---------------------------------------------------------------------------------------------
# IP / CIDR library (k8s.io/apiserver/pkg/cel/library/ip.go, cidr.go). Like Kubernetes, IPv4-mapped
# IPv6 addresses and zones are rejected, and leading zeros in IPv4 octets are errors.


class IP:
    cel_type = "net.IP"

    def __init__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self.addr = addr

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and self.addr == other.addr

    def __hash__(self) -> int:
        return hash(self.addr)

    def __str__(self) -> str:
        return str(self.addr)


class CIDR:
    cel_type = "net.CIDR"

    def __init__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int) -> None:
        self.addr = addr
        self.prefix = prefix

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.addr}/{self.prefix}", strict=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CIDR) and self.addr == other.addr and self.prefix == other.prefix

    def __hash__(self) -> int:
        return hash((self.addr, self.prefix))

    def __str__(self) -> str:
        return f"{self.addr}/{self.prefix}"


def _parse_ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in s:
        return None  # zones are not allowed
    try:
        a = ipaddress.ip_address(s)  # rejects leading zeros in IPv4 octets, as netip.ParseAddr does
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return None
    return a


def ip(v: Any) -> IP:
    if isinstance(v, CIDR):  # cidr.ip() member
        return IP(v.addr)
    a = _parse_ip(_s(v))
    if a is None:
        raise CelError(f"IP Address '{v}' parse error during conversion from string")
    return IP(a)


def is_ip(s: Any) -> bool:
    return _parse_ip(_s(s)) is not None


def _parse_cidr(s: str) -> CIDR | None:
    addr_s, sep, prefix_s = s.partition("/")
    if not sep or not prefix_s.isdigit() or (len(prefix_s) > 1 and prefix_s[0] == "0"):
        return None
    a = _parse_ip(addr_s)
    if a is None:
        return None
    prefix = int(prefix_s)
    if prefix > a.max_prefixlen:
        return None
    return CIDR(a, prefix)


def cidr(s: Any) -> CIDR:
    c = _parse_cidr(_s(s))
    if c is None:
        raise CelError(f"network address parse error during conversion from string: {s}")
    return c


def is_cidr(s: Any) -> bool:
    return _parse_cidr(_s(s)) is not None


def _ip_or_cidr_addr(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(v, (IP, CIDR)):
        return v.addr
    raise CelError(f"no such overload: expected IP, got {type_name(v)}")


def family(v: Any) -> int:
    return _ip_or_cidr_addr(v).version


def is_unspecified(v: Any) -> bool:
    return _ip_or_cidr_addr(v).is_unspecified


def is_loopback(v: Any) -> bool:
    return _ip_or_cidr_addr(v).is_loopback


def is_link_local_multicast(v: Any) -> bool:
    a = _ip_or_cidr_addr(v)
    if a.version == 4:
        return a in ipaddress.ip_network("224.0.0.0/24")
    return a in ipaddress.ip_network("ff02::/16")


def is_link_local_unicast(v: Any) -> bool:
    a = _ip_or_cidr_addr(v)
    return a.is_link_local if a.version == 4 else a in ipaddress.ip_network("fe80::/10")


def is_global_unicast(v: Any) -> bool:
    # Go netip.Addr.IsGlobalUnicast: not unspecified, loopback, multicast, link-local or broadcast.
    a = _ip_or_cidr_addr(v)
    if a.is_unspecified or a.is_loopback or a.is_multicast or is_link_local_unicast(v):
        return False
    return not (a.version == 4 and str(a) == "255.255.255.255")


def prefix_length(c: Any) -> int:
    if not isinstance(c, CIDR):
        raise CelError(f"no such overload: prefixLength({type_name(c)})")
    return c.prefix


def masked(c: Any) -> CIDR:
    if not isinstance(c, CIDR):
        raise CelError(f"no such overload: masked({type_name(c)})")
    return CIDR(c.network.network_address, c.prefix)


def contains_ip(c: Any, other: Any) -> bool:
    if not isinstance(c, CIDR):
        raise CelError("no such overload: containsIP")
    addr = other.addr if isinstance(other, IP) else ip(other).addr
    return addr.version == c.addr.version and addr in c.network


def contains_cidr(c: Any, other: Any) -> bool:
    if not isinstance(c, CIDR):
        raise CelError("no such overload: containsCIDR")
    o = other if isinstance(other, CIDR) else cidr(other)
    return o.addr.version == c.addr.version and o.prefix >= c.prefix and o.network.network_address in c.network


# ---------------------------------------------------------------------------------------------
# optionals


def opt_of(v: Any) -> Optional_:
    return Optional_(True, v)


def opt_none() -> Optional_:
    return NONE


def opt_of_non_zero(v: Any) -> Optional_:
    zero = v in (0, 0.0, "", b"", False) and not (v is True) or v is None or v == [] or v == {}
    return NONE if zero else Optional_(True, v)


def or_value(o: Any, default: Any) -> Any:
    if not isinstance(o, Optional_):
        raise CelError(f"no such overload: orValue on {type_name(o)}")
    return o.value if o.has else default


def has_value(o: Any) -> bool:
    if not isinstance(o, Optional_):
        raise CelError(f"no such overload: hasValue on {type_name(o)}")
    return o.has


def opt_value(o: Any) -> Any:
    if not isinstance(o, Optional_):
        raise CelError(f"no such overload: value on {type_name(o)}")
    if not o.has:
        raise CelError("optional.none() dereference")
    return o.value


def _contains(recv: Any, sub: Any) -> bool:
    if isinstance(recv, str):
        return contains(recv, sub)
    raise CelError(f"no such overload: contains on {type_name(recv)}")


def _byte_b64(v: Any) -> str:
    return base64.b64encode(to_bytes(v)).decode()


GLOBALS: dict[str, Callable[..., Any]] = {
    "size": size,
    "int": to_int,
    "uint": to_int,
    "double": to_double,
    "string": to_string,
    "bool": to_bool,
    "bytes": to_bytes,
    "duration": to_duration,
    "timestamp": to_timestamp,
    "matches": matches,
    "url": url,
    "isURL": is_url,
    "ip": ip,
    "isIP": is_ip,
    "cidr": cidr,
    "isCIDR": is_cidr,
    "optional.of": opt_of,
    "optional.none": opt_none,
    "optional.ofNonZeroValue": opt_of_non_zero,
    "strings.quote": quote,
}

MEMBERS: dict[str, Callable[..., Any]] = {
    "size": size,
    "contains": _contains,
    "startsWith": starts_with,
    "endsWith": ends_with,
    "matches": matches,
    "find": find,
    "findAll": find_all,
    "lowerAscii": lower_ascii,
    "upperAscii": upper_ascii,
    "split": split,
    "join": join,
    "replace": replace,
    "indexOf": index_of,
    "lastIndexOf": last_index_of,
    "substring": substring,
    "trim": trim,
    "charAt": char_at,
    "reverse": reverse,
    "format": str_format,
    "isSorted": is_sorted,
    "sum": list_sum,
    "min": list_min,
    "max": list_max,
    "getScheme": get_scheme,
    "getHost": get_host,
    "getHostname": get_hostname,
    "getPort": get_port,
    "getEscapedPath": get_escaped_path,
    "getQuery": get_query,
    "ip": ip,
    "family": family,
    "isUnspecified": is_unspecified,
    "isLoopback": is_loopback,
    "isLinkLocalMulticast": is_link_local_multicast,
    "isLinkLocalUnicast": is_link_local_unicast,
    "isGlobalUnicast": is_global_unicast,
    "prefixLength": prefix_length,
    "masked": masked,
    "containsIP": contains_ip,
    "containsCIDR": contains_cidr,
    "getSeconds": get_seconds,
    "getMinutes": get_minutes,
    "getHours": get_hours,
    "getMilliseconds": get_milliseconds,
    "orValue": or_value,
    "hasValue": has_value,
    "value": opt_value,
}

K8S_FUNCTIONS = FunctionTable(globals=GLOBALS, members=MEMBERS)
