#!/usr/bin/env python3
"""Generate Tollgate's shipped rate catalog from two public, MIT-licensed price catalogs.

    python3 scripts/gen_catalog.py [--prices-dir DIR] [--out FILE] [--verbose]

Inputs (default: ../shared/data/prices/ relative to the repository root):
  genai_prices_catalog.json   pydantic/genai-prices, normalized into price periods (the base)
  litellm_model_prices.json   LiteLLM's price map, USD per token (batch multipliers, and
                              models genai-prices lacks)
Output (default: crates/tollgate-core/catalog/catalog.toml), plus both license files copied
next to it. A summary goes to stderr.

Standard library only. Every number is parsed and computed as an exact decimal; the output is
deterministic (re-running gives a byte-identical file) and is checked by parsing it back with
tomllib before it is written.
"""

from __future__ import annotations

import argparse
import decimal
import json
import re
import shutil
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PRICES_DIR = REPO_ROOT / ".." / "shared" / "data" / "prices"
DEFAULT_OUT = REPO_ROOT / "crates" / "tollgate-core" / "catalog" / "catalog.toml"

GENAI_FILE = "genai_prices_catalog.json"
LITELLM_FILE = "litellm_model_prices.json"
LICENSES = ("GENAI_PRICES_LICENSE", "LITELLM_LICENSE")

MTOK_SCALE = 6  # most decimal places of a per-million-token price (enforced by the Rust loader)
UNIT_SCALE = 9  # most decimal places of a per-unit price
BATCH_SCALE = 12  # most decimal places of a batch multiplier
MILLION = Decimal(1_000_000)

# The five token classes, in output order, with their TOML keys.
CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h", "output")
CLASS_KEY = {c: f"{c}_per_mtok" for c in CLASSES}

# genai-prices price keys that map onto our token classes / units.
GENAI_CLASS = {
    "input_mtok": "input",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_mtok": "output",
}
# genai-prices per-count keys -> Tollgate unit name (price per single unit = flat / per).
GENAI_UNIT = {
    "web_searches_kcount": "web_search_requests",
    "requests_kcount": "requests",
}

# LiteLLM per-token keys -> our token classes.
LITELLM_CLASS = {
    "input_cost_per_token": "input",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",  # the 1-hour write price
    "output_cost_per_token": "output",
}
LITELLM_TIER_RX = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost_above_1hr|cache_creation_input_token_cost)"
    r"_above_(\d+)k_tokens$"
)
LITELLM_MODES = ("chat", "completion", "embedding", "responses")

# Provider ids: OpenTelemetry gen_ai.provider.name style.
EXPLICIT_PROVIDERS = (
    "openai", "anthropic", "aws.bedrock", "gcp.gemini", "gcp.vertex_ai", "azure.openai",
    "mistral_ai", "deepseek", "groq", "cohere", "x_ai", "perplexity",
)
# genai-prices provider id -> Tollgate provider ids. genai-prices' `google` provider matches the
# provider names google / vertex / gemini and prices both APIs alike, so it feeds both ids.
GENAI_PROVIDER = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "aws": ("aws.bedrock",),
    "google": ("gcp.gemini", "gcp.vertex_ai"),
    "azure": ("azure.openai",),
    "mistral": ("mistral_ai",),
    "deepseek": ("deepseek",),
    "groq": ("groq",),
    "cohere": ("cohere",),
    "x-ai": ("x_ai",),
    "xai": ("x_ai",),
    "perplexity": ("perplexity",),
}
# LiteLLM `litellm_provider` -> Tollgate provider id (vertex_ai-* handled in code). The last
# group names the same provider as a genai-prices id spelled differently.
LITELLM_PROVIDER = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "azure": "azure.openai",
    "azure_text": "azure.openai",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "fireworks_ai": "fireworks",
    "together_ai": "together",
    "moonshot": "moonshotai",
    "voyage": "voyageai",
    "github_copilot": "github_copilot",
}
# Tollgate providers whose LiteLLM keys carry a region or deployment type after the provider
# prefix (bedrock/us-east-1/..., azure/eu/...): such keys are regional SKUs, not model names.
REGIONAL_KEY_PROVIDERS = ("aws.bedrock", "azure.openai")


def normalize_provider(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", s.lower())


def genai_provider_ids(pid: str) -> tuple[str, ...]:
    return GENAI_PROVIDER.get(pid, (normalize_provider(pid),))


def litellm_provider_id(lp: str) -> str:
    if lp.startswith("vertex_ai"):
        return "gcp.vertex_ai"
    return LITELLM_PROVIDER.get(lp, normalize_provider(lp))


# ----------------------------------------------------------------------------------------------
# Decimals


def exact_ctx() -> decimal.Context:
    """A context in which any rounding raises, for operations that must be exact."""
    return decimal.Context(prec=80, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation])


def fmt_dec(d: Decimal) -> str:
    """Plain decimal string without exponent and without trailing fractional zeros."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("", "-0"):
        s = "0"
    return s


def scale_of(d: Decimal) -> int:
    """Decimal places needed to write d exactly."""
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def is_dec(v) -> bool:
    return isinstance(v, Decimal) and v.is_finite()


# ----------------------------------------------------------------------------------------------
# Reporting


class Report:
    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.counts: Counter = Counter()
        self.items: dict[str, list[str]] = defaultdict(list)
        self._seen: dict[str, set[str]] = defaultdict(set)

    def add(self, reason: str, item: str | None = None, n: int = 1) -> None:
        if item is not None:
            if item in self._seen[reason]:
                return  # e.g. the same key in several periods of one model: listed once
            self._seen[reason].add(item)
            self.items[reason].append(item)
        self.counts[reason] += n

    def lines(self, reason: str, always: bool = False, limit: int = 8) -> list[str]:
        items = self.items.get(reason, [])
        if always or self.verbose:
            shown = items
        else:
            shown = items[:limit]
        out = [f"      {x}" for x in shown]
        if len(shown) < len(items):
            out.append(f"      ... and {len(items) - len(shown)} more (--verbose lists all)")
        return out


# ----------------------------------------------------------------------------------------------
# Match rules -> exact names and globs


class Inexpressible(Exception):
    pass


MAX_EXPANSIONS = 16


def _regex_expand(body: str) -> list[str]:
    """All strings a small regex (literals, escapes, \\d, [classes], (groups|alts), ?) matches.

    Raises Inexpressible for anything else or for more than MAX_EXPANSIONS strings.
    """
    pos = 0

    def product(a: list[str], b: list[str]) -> list[str]:
        out = [x + y for x in a for y in b]
        if len(out) > MAX_EXPANSIONS:
            raise Inexpressible("too many alternatives")
        return out

    def parse_alt() -> list[str]:
        nonlocal pos
        options = parse_seq()
        while pos < len(body) and body[pos] == "|":
            pos += 1
            options = options + parse_seq()
            if len(options) > MAX_EXPANSIONS:
                raise Inexpressible("too many alternatives")
        return options

    def parse_seq() -> list[str]:
        nonlocal pos
        acc = [""]
        while pos < len(body) and body[pos] not in "|)":
            atom = parse_atom()
            if pos < len(body) and body[pos] in "*+{":
                raise Inexpressible("repetition")
            if pos < len(body) and body[pos] == "?":
                pos += 1
                if pos < len(body) and body[pos] in "?+":
                    raise Inexpressible("lazy/possessive quantifier")
                atom = atom + [""]
            acc = product(acc, atom)
        return acc

    def parse_escape() -> list[str]:
        nonlocal pos
        if pos + 1 >= len(body):
            raise Inexpressible("dangling escape")
        c = body[pos + 1]
        pos += 2
        if c == "d":
            return list("0123456789")
        if c.isalnum() or c == "_":
            raise Inexpressible(f"escape \\{c}")
        return [c]

    def parse_class() -> list[str]:
        nonlocal pos
        pos += 1  # '['
        if pos < len(body) and body[pos] == "^":
            raise Inexpressible("negated class")
        chars: list[str] = []
        first = True
        while pos < len(body) and (body[pos] != "]" or first):
            first = False
            if body[pos] == "\\":
                got = parse_escape()
            else:
                got = [body[pos]]
                pos += 1
            if (
                len(got) == 1
                and pos + 1 < len(body)
                and body[pos] == "-"
                and body[pos + 1] != "]"
            ):
                hi = body[pos + 1]
                if hi == "\\":
                    raise Inexpressible("escaped range end")
                pos += 2
                lo = got[0]
                if ord(hi) < ord(lo):
                    raise Inexpressible("bad range")
                got = [chr(i) for i in range(ord(lo), ord(hi) + 1)]
            chars.extend(got)
        if pos >= len(body):
            raise Inexpressible("unterminated class")
        pos += 1  # ']'
        out = sorted(set(chars))
        if len(out) > MAX_EXPANSIONS:
            raise Inexpressible("class too large")
        return out

    def parse_atom() -> list[str]:
        nonlocal pos
        c = body[pos]
        if c == "(":
            pos += 1
            if body.startswith("?:", pos):
                pos += 2
            elif pos < len(body) and body[pos] == "?":
                raise Inexpressible("lookaround or special group")
            inner = parse_alt()
            if pos >= len(body) or body[pos] != ")":
                raise Inexpressible("unbalanced group")
            pos += 1
            return inner
        if c == "[":
            return parse_class()
        if c == "\\":
            return parse_escape()
        if c in ".^$*+?{}":
            raise Inexpressible(f"metacharacter {c!r}")
        pos += 1
        return [c]

    result = parse_alt()
    if pos != len(body):
        raise Inexpressible("unbalanced group")
    return result


def regex_to_names_globs(rx: str) -> tuple[list[str], list[str]]:
    """An equivalent set of exact names and globs for a regex (re.search semantics)."""
    start = rx.startswith("^")
    body = rx[1:] if start else rx
    end = body.endswith("$") and not body.endswith("\\$")
    if end:
        body = body[:-1]
    strings = _regex_expand(body)
    compiled = re.compile(body)
    for s in strings:  # self-check of the expansion
        if not compiled.fullmatch(s):
            raise Inexpressible("expansion self-check failed")
        if "*" in s and not (start and end):
            raise Inexpressible("literal '*' in a glob")
    if start and end:
        return strings, []
    if start:
        return [], [s + "*" for s in strings]
    if end:
        return [], ["*" + s for s in strings]
    return [], ["*" + s + "*" for s in strings]


def genai_match(rule: dict, text: str) -> bool:
    """genai-prices' own match semantics (case-sensitive, regex via re.search)."""
    (k, v), = rule.items()
    if k == "equals":
        return text == v
    if k == "starts_with":
        return text.startswith(v)
    if k == "ends_with":
        return text.endswith(v)
    if k == "contains":
        return v in text
    if k == "regex":
        return re.search(v, text) is not None
    if k == "or":
        return any(genai_match(r, text) for r in v)
    if k == "and":
        return all(genai_match(r, text) for r in v)
    raise ValueError(f"unknown match clause {k!r}")


def describe(rule: dict) -> str:
    return json.dumps(rule, ensure_ascii=False, separators=(",", ":"))


def convert_match(rule: dict) -> tuple[list[str], list[str], list[str]]:
    """genai-prices match rule -> (exact names, globs, descriptions of dropped clauses).

    The result never matches a name the rule does not match: an `or` keeps its expressible
    branches (a narrower rule), anything else that is not exactly expressible is dropped.
    """
    (k, v), = rule.items()
    if k == "equals":
        return [v], [], []
    if k in ("starts_with", "ends_with", "contains"):
        if "*" in v:
            return [], [], [describe(rule)]
        glob = {"starts_with": f"{v}*", "ends_with": f"*{v}", "contains": f"*{v}*"}[k]
        return [], [glob], []
    if k == "regex":
        try:
            names, globs = regex_to_names_globs(v)
            return names, globs, []
        except Inexpressible:
            return [], [], [describe(rule)]
    if k == "or":
        names: list[str] = []
        globs: list[str] = []
        dropped: list[str] = []
        for r in v:
            n, g, d = convert_match(r)
            names += n
            globs += g
            dropped += d
        return names, globs, dropped
    if k == "and":
        # Exactly expressible only when one branch pins an exact name that satisfies the rest.
        for r in v:
            if "equals" in r:
                name = r["equals"]
                if genai_match(rule, name):
                    return [name], [], []
                return [], [], []  # matches nothing
        return [], [], [describe(rule)]
    return [], [], [describe(rule)]


def glob_match(pattern: str, text: str) -> bool:
    """Tollgate glob semantics: '*' matches any run (possibly empty); all else is literal."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == text
    first, last = parts[0], parts[-1]
    if not text.startswith(first) or len(text) < len(first) + len(last) or not text.endswith(last):
        return False
    rest = text[len(first): len(text) - len(last)]
    for mid in parts[1:-1]:
        i = rest.find(mid)
        if i < 0:
            return False
        rest = rest[i + len(mid):]
    return True


def dedup(xs: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# ----------------------------------------------------------------------------------------------
# Catalog model


@dataclass
class Entry:
    effective_from: str | None  # "YYYY-MM-DD" (genai-prices) or None
    effective_to: str | None
    prices: dict[str, Decimal]  # class -> USD per million tokens
    tiers: list[tuple[int, dict[str, Decimal]]] = field(default_factory=list)
    per_unit: dict[str, Decimal] = field(default_factory=dict)
    batch_multiplier: Decimal | None = None
    source: str = "genai-prices"


@dataclass
class Model:
    provider: str
    name: str
    aliases: list[str]
    patterns: list[str]
    entries: list[Entry]
    origin: str  # "genai-prices", "genai-prices fallback <pid>", "litellm"
    rule: dict | None = None  # the full genai-prices match rule (reference semantics)
    litellm_key: str | None = None


class ProviderBook:
    """One Tollgate provider's models, with Tollgate's name resolution."""

    def __init__(self, pid: str):
        self.pid = pid
        self.models: list[Model] = []
        self._index_cache: dict[bool, tuple[dict[str, Model], list[tuple[str, Model]]]] = {}

    def invalidate(self) -> None:
        self._index_cache = {}

    def _index(self, written_only: bool) -> tuple[dict[str, Model], list[tuple[str, Model]]]:
        if written_only not in self._index_cache:
            names: dict[str, Model] = {}
            patterns: list[tuple[str, Model]] = []
            for m in self.models:
                if written_only and not m.entries:
                    continue
                for n in [m.name, *m.aliases]:
                    names.setdefault(n, m)
                for p in m.patterns:
                    patterns.append((p, m))
            self._index_cache[written_only] = (names, patterns)
        return self._index_cache[written_only]

    def resolve(self, name: str, written_only: bool = False) -> tuple[Model, str] | None:
        """(model, how) where how is 'name', 'alias' or 'pattern' -- Tollgate's order.

        By default placeholders (genai-prices models without a price) take part, so they keep
        their names; `written_only` resolves like the written catalog does.
        """
        names, patterns = self._index(written_only)
        m = names.get(name)
        if m is not None:
            return m, ("name" if m.name == name else "alias")
        for p, m in patterns:
            if glob_match(p, name):
                return m, "pattern"
        return None

    def genai_resolve(self, name: str) -> Model | None:
        """genai-prices' resolution: first model (source order) whose full rule matches."""
        for m in self.models:
            if m.rule is not None and genai_match(m.rule, name):
                return m
        return None


# ----------------------------------------------------------------------------------------------
# genai-prices


def dec_per_mtok(value: Decimal, per: Decimal, what: str, rep: Report) -> Decimal:
    """Price per `per` units -> price per million, at most MTOK_SCALE places."""
    try:
        v = exact_ctx().divide(exact_ctx().multiply(value, MILLION), per)
    except (decimal.Inexact, decimal.Rounded):
        v = decimal.Context(prec=80).divide(value * MILLION, per)
    return round_scale(v, MTOK_SCALE, what, rep)


def round_scale(v: Decimal, scale: int, what: str, rep: Report) -> Decimal:
    if v < 0:
        raise SystemExit(f"error: negative price {v} for {what}")
    if scale_of(v) > scale:
        q = v.quantize(Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_EVEN)
        rep.add(f"prices rounded half-even to {scale} decimal places", f"{what}: {fmt_dec(v)} -> {fmt_dec(q)}")
        v = q
    return v.normalize() if v != 0 else Decimal(0)


def genai_period_entry(pid: str, model_id: str, period: dict, rep: Report) -> Entry | None:
    label = f"{pid}/{model_id}"
    flat: dict[str, Decimal] = {}
    tiered: dict[str, tuple[Decimal, list[tuple[int, Decimal]]]] = {}
    per_unit: dict[str, Decimal] = {}
    for key, spec in period["prices"].items():
        if key in GENAI_CLASS:
            cls = GENAI_CLASS[key]
            per = spec["per"]
            if "flat" in spec and is_dec(spec["flat"]):
                flat[cls] = dec_per_mtok(spec["flat"], per, f"{label} {key}", rep)
            elif "base" in spec and "tiers" in spec:
                base = dec_per_mtok(spec["base"], per, f"{label} {key}", rep)
                steps = []
                for t in spec["tiers"]:
                    thr = t["above_input_tokens"]
                    if thr != thr.to_integral_value() or thr < 0:
                        raise SystemExit(f"error: {label}: non-integer tier threshold {thr}")
                    steps.append((int(thr), dec_per_mtok(t["price"], per, f"{label} {key} tier {thr}", rep)))
                steps.sort()
                tiered[cls] = (base, steps)
            else:
                rep.add("genai-prices price shapes not understood (skipped)", f"{label} {key}: {spec}")
        elif key in GENAI_UNIT:
            if "flat" not in spec:
                rep.add("genai-prices price shapes not understood (skipped)", f"{label} {key}: {spec}")
                continue
            v = decimal.Context(prec=80).divide(spec["flat"], spec["per"])
            per_unit[GENAI_UNIT[key]] = round_scale(v, UNIT_SCALE, f"{label} {key}", rep)
        else:
            rep.add(f"genai-prices price key not expressible: {key}", label)
    prices: dict[str, Decimal] = dict(flat)
    for cls, (base, _) in tiered.items():
        prices[cls] = base
    thresholds = sorted({thr for _, steps in tiered.values() for thr, _ in steps})
    tiers = []
    for thr in thresholds:
        tp: dict[str, Decimal] = {}
        for cls in CLASSES:
            if cls in flat:
                tp[cls] = flat[cls]
            elif cls in tiered:
                base, steps = tiered[cls]
                # The class's own price at this input size: its highest threshold <= thr.
                price = base
                for t, p in steps:
                    if t <= thr:
                        price = p
                tp[cls] = price
        tiers.append((thr, tp))
    if len({frozenset(s for s, _ in steps) for _, steps in tiered.values()}) > 1:
        rep.add("genai-prices periods whose classes tier at different thresholds (merged)", label)
    if not prices and not per_unit:
        return None
    return Entry(
        effective_from=period["effective_from"],
        effective_to=period["effective_to"],
        prices={c: prices[c] for c in CLASSES if c in prices},
        tiers=tiers,
        per_unit=dict(sorted(per_unit.items())),
    )


def genai_model(pid: str, tg_pid: str, m: dict, rep: Report, first_copy: bool) -> Model:
    label = f"{pid}/{m['id']}"
    names, globs, dropped = convert_match(m["match"])
    if dropped and first_copy:
        tag = "rest kept" if (names or globs) else "whole rule dropped; exact id only"
        rep.add("genai-prices match clauses not expressible as globs", f"{label} ({tag}): {'; '.join(dropped)}")
    aliases = dedup([n for n in names if n != m["id"]])
    patterns = dedup(globs)
    periods = m["price_periods"]
    windowed = [p for p in periods if isinstance(p.get("time_of_day"), dict)]
    otherwise = [p for p in periods if p.get("time_of_day") == "otherwise"]
    allday = [p for p in periods if p.get("time_of_day") is None]
    if windowed and first_copy:
        wins = ", ".join(
            f"{p['time_of_day']['start_utc'][:5]}-{p['time_of_day']['end_utc'][:5]} UTC "
            f"in {fmt_dec(p['prices']['input_mtok']['flat']) if 'flat' in p['prices'].get('input_mtok', {}) else '?'}"
            f"/out {fmt_dec(p['prices']['output_mtok']['flat']) if 'flat' in p['prices'].get('output_mtok', {}) else '?'}"
            for p in windowed
        )
        kept = "dated all-day periods" if allday else "the 'otherwise' (base) price as all-day"
        rep.add("genai-prices time-of-day periods skipped", f"{label}: kept {kept}; skipped window(s) {wins}")
    if not allday:
        allday = otherwise  # the genai-prices base price; the windows override it
    entries = []
    skipped = 0
    for p in allday:
        e = genai_period_entry(pid, m["id"], p, rep if first_copy else Report(False))
        if e is None:
            skipped += 1
            continue
        entries.append(e)
    entries.sort(key=lambda e: (e.effective_from is not None, e.effective_from or ""))
    if first_copy and skipped:
        why = "no price at all" if not any(p["prices"] for p in allday) else "no price Tollgate can express"
        if entries:
            rep.add("genai-prices periods skipped: no expressible price (model kept)", f"{label} ({skipped} of {len(allday)})")
        else:
            rep.add(f"genai-prices models skipped: {why}", label)
    # A model without entries is kept as a placeholder: it is not written, but it still owns its
    # names, so LiteLLM cannot price a model genai-prices lists (e.g. as included/free).
    return Model(tg_pid, m["id"], aliases, patterns, entries, "genai-prices", rule=m["match"])


def build_genai(genai: dict, rep: Report) -> dict[str, ProviderBook]:
    books: dict[str, ProviderBook] = {}
    by_id = {p["id"]: p for p in genai["providers"]}
    owner: dict[str, str] = {}
    for p in genai["providers"]:
        for i, tg in enumerate(genai_provider_ids(p["id"])):
            if tg in owner:
                raise SystemExit(f"error: providers {owner[tg]} and {p['id']} both map to {tg}")
            owner[tg] = p["id"]
            book = books.setdefault(tg, ProviderBook(tg))
            for m in p["models"]:
                book.models.append(genai_model(p["id"], tg, m, rep, first_copy=(i == 0)))
    # Fallback providers: genai-prices looks a model up in these when the provider's own list
    # has no match (e.g. azure -> openai). Materialize that, keeping genai-prices' precedence:
    # a copied model never takes a name the provider's own rules (or an earlier copy) match.
    for p in genai["providers"]:
        for fb in p.get("fallback_model_providers") or []:
            src = by_id.get(fb)
            if src is None:
                rep.add("genai-prices fallback providers not found", f"{p['id']} -> {fb}")
                continue
            for tg in genai_provider_ids(p["id"]):
                book = books[tg]
                for m in src["models"]:
                    if book.genai_resolve(m["id"]) is not None or any(x.name == m["id"] for x in book.models):
                        rep.add("genai-prices fallback models shadowed by the provider's own", f"{tg}: {fb}/{m['id']}")
                        continue
                    model = genai_model(fb, tg, m, rep, first_copy=False)
                    kept = [a for a in model.aliases if book.genai_resolve(a) is None]
                    if len(kept) != len(model.aliases):
                        rep.add("genai-prices fallback aliases shadowed by the provider's own", f"{tg}: {fb}/{m['id']}",
                                n=len(model.aliases) - len(kept))
                    model.aliases = kept
                    model.origin = f"genai-prices fallback {p['id']} -> {fb}"
                    book.models.append(model)
                    book.invalidate()
                    if model.entries:
                        rep.add(f"genai-prices fallback models materialized ({p['id']} -> {fb})", n=1)
    for book in books.values():
        book.invalidate()
    return books


# ----------------------------------------------------------------------------------------------
# LiteLLM


@dataclass
class LEntry:
    key: str
    provider: str
    name: str
    data: dict


def litellm_entries(litellm: dict, allowed: set[str], rep: Report) -> list[LEntry]:
    out = []
    skipped_providers: Counter = Counter()
    for key, e in litellm.items():
        if key == "sample_spec" or not isinstance(e, dict):
            continue
        lp = e.get("litellm_provider")
        mode = e.get("mode")
        if not isinstance(lp, str):
            rep.add("litellm entries without litellm_provider")
            continue
        if mode not in LITELLM_MODES:
            rep.add("litellm entries of other modes (image, audio, rerank, ...)")
            continue
        tg = litellm_provider_id(lp)
        if tg not in allowed:
            rep.add("litellm entries of providers neither in genai-prices nor in the explicit list")
            skipped_providers[lp] += 1
            continue
        name = key
        first, sep, rest = key.partition("/")
        if sep and rest and (first == lp or litellm_provider_id(first) == tg):
            name = rest
        if tg in REGIONAL_KEY_PROVIDERS and "/" in name:
            rep.add("litellm region/deployment-specific keys (skipped)", key)
            continue
        out.append(LEntry(key, tg, name, e))
    for lp, n in sorted(skipped_providers.items(), key=lambda x: (-x[1], x[0])):
        rep.items["litellm entries of providers neither in genai-prices nor in the explicit list"].append(f"{lp}: {n}")
    return out


def litellm_batch_fraction(e: dict) -> tuple[Decimal | None, str]:
    """The batch fraction of an entry, or (None, why not)."""
    bi, bo = e.get("input_cost_per_token_batches"), e.get("output_cost_per_token_batches")
    si, so = e.get("input_cost_per_token"), e.get("output_cost_per_token")
    if bi is None and bo is None:
        return None, "none"
    if not (is_dec(bi) and is_dec(bo) and is_dec(si) and is_dec(so)) or si <= 0:
        return None, "batch price for input or output missing"
    ctx = exact_ctx()
    try:
        f = ctx.divide(bi, si)
    except (decimal.Inexact, decimal.Rounded):
        return None, "batch fraction not a terminating decimal"
    if so == 0:
        if bo != 0:
            return None, "input and output batch fractions differ"
    elif ctx.multiply(f, so) != bo:
        return None, "input and output batch fractions differ"
    if not (0 < f <= 1):
        return None, "batch fraction not in (0, 1]"
    # Tollgate applies the multiplier to every token class: other classes with a published
    # batch price must be discounted by the same fraction.
    for k, v in e.items():
        if not k.endswith("_batches") or not is_dec(v):
            continue
        std = k[: -len("_batches")]
        if std in ("input_cost_per_token", "output_cost_per_token"):
            continue
        cls = LITELLM_CLASS.get(std) or (LITELLM_TIER_RX.match(std) and "tier")
        if not cls or not is_dec(e.get(std)):
            continue
        if ctx.multiply(f, e[std]) != v:
            return None, f"batch price of {std} is not the same fraction"
    return f.normalize(), "ok"


def litellm_prices(le: LEntry, rep: Report) -> Entry | None:
    e = le.data
    label = f"litellm {le.key}"
    prices: dict[str, Decimal] = {}
    for k, cls in LITELLM_CLASS.items():
        v = e.get(k)
        if v is None:
            continue
        if not is_dec(v) or v < 0:
            rep.add("litellm non-numeric prices (skipped)", f"{label} {k}")
            continue
        prices[cls] = round_scale(exact_ctx().multiply(v, MILLION), MTOK_SCALE, f"{label} {k}", rep)
    mode = e.get("mode")
    if mode == "embedding":
        if not prices.get("input"):
            rep.add("litellm entries with zero or missing input/output price (skipped)", le.key)
            return None
        if not prices.get("output"):
            prices.pop("output", None)  # embeddings produce no output tokens
    elif not prices.get("input") or not prices.get("output"):
        rep.add("litellm entries with zero or missing input/output price (skipped)", le.key)
        return None
    tier_prices: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for k, v in e.items():
        mt = LITELLM_TIER_RX.match(k)
        if not mt or not is_dec(v):
            continue
        cls = LITELLM_CLASS[mt.group(1)]
        thr = int(mt.group(2)) * 1000
        if cls not in prices:
            rep.add("litellm tier prices for a class without a base price (dropped)", f"{label} {k}")
            continue
        tier_prices[thr][cls] = round_scale(exact_ctx().multiply(v, MILLION), MTOK_SCALE, f"{label} {k}", rep)
    tiers = []
    for thr in sorted(tier_prices):
        tp = {c: tier_prices[thr].get(c, prices[c]) for c in CLASSES if c in prices}
        tiers.append((thr, tp))
    return Entry(None, None, {c: prices[c] for c in CLASSES if c in prices}, tiers, {}, None, "litellm")


def batch_ok(entry: Entry, m: Decimal) -> bool:
    """Every batch price (base and tiers) stays within MTOK_SCALE places."""
    if scale_of(m) > BATCH_SCALE:
        return False
    ctx = exact_ctx()
    for prices in [entry.prices] + [tp for _, tp in entry.tiers]:
        for v in prices.values():
            if scale_of(ctx.multiply(v, m)) > MTOK_SCALE:
                return False
    return True


def apply_litellm(books: dict[str, ProviderBook], entries: list[LEntry], rep: Report) -> dict:
    stats: Counter = Counter()
    # 0. Names that genai-prices' full rules cover but our globs cannot: exact aliases.
    for le in entries:
        book = books.get(le.provider)
        if book is None or book.resolve(le.name) is not None:
            continue
        m = book.genai_resolve(le.name)
        if m is not None:
            m.aliases.append(le.name)
            book.invalidate()
            rep.add("litellm names added as exact aliases (genai-prices rule covers them, globs cannot)",
                    f"{le.provider}: {le.name} -> {m.name}")
    # 1. Split into names genai-prices prices and names it lacks.
    matched: dict[int, list[tuple[int, LEntry]]] = defaultdict(list)
    models_by_id: dict[int, Model] = {}
    lacking: list[LEntry] = []
    level_rank = {"name": 0, "alias": 1, "pattern": 2}
    disagree_models: set[int] = set()
    examples: list[str] = []
    for le in entries:
        book = books.get(le.provider)
        hit = book.resolve(le.name) if book else None
        if hit is None:
            lacking.append(le)
            continue
        m, how = hit
        if m.origin == "litellm":
            continue
        if not m.entries:
            rep.add("litellm entries not added: genai-prices lists the model without a usable price",
                    f"{le.provider}: {le.key} -> {m.name}")
            continue
        matched[id(m)].append((level_rank[how], le))
        models_by_id[id(m)] = m
        # Disagreement: LiteLLM's standard prices match none of genai-prices' periods (LiteLLM
        # has no history, so agreeing with a past or scheduled period is not a disagreement).
        diffs = []
        for x in reversed(m.entries):
            d = []
            for k, cls in LITELLM_CLASS.items():
                v = le.data.get(k)
                if cls in x.prices and is_dec(v) and exact_ctx().multiply(v, MILLION) != x.prices[cls]:
                    d.append(f"{cls} {fmt_dec(x.prices[cls])} vs {fmt_dec(v * MILLION)}")
            if not d:
                diffs = []
                break
            if not diffs:
                diffs = d  # report against the latest period
        if diffs:
            stats["disagreeing litellm entries"] += 1
            disagree_models.add(id(m))
            rep.add("price disagreements (genai-prices wins)", f"{le.provider}/{m.name} vs litellm {le.key}: {', '.join(diffs)}")
    stats["disagreeing models"] = len(disagree_models)
    # 2. Batch multipliers for genai-prices models.
    for mid, hits in matched.items():
        m = models_by_id[mid]
        with_info = [(lvl, le) for lvl, le in hits if litellm_batch_fraction(le.data)[1] != "none"]
        if not with_info:
            continue
        best = min(lvl for lvl, _ in with_info)
        results = [litellm_batch_fraction(le.data) for lvl, le in with_info if lvl == best]
        bad = [why for f, why in results if f is None]
        fracs = {f for f, _ in results if f is not None}
        label = f"{m.provider}/{m.name}"
        if bad:
            rep.add("batch multipliers not set: inconsistent litellm batch prices", f"{label}: {bad[0]}")
            continue
        if len(fracs) != 1:
            rep.add("batch multipliers not set: litellm entries disagree", f"{label}: {sorted(map(fmt_dec, fracs))}")
            continue
        f = fracs.pop()
        current = [x for x in m.entries if x.effective_to is None]
        if not all(batch_ok(x, f) for x in current):
            rep.add("batch multipliers not set: batch price would need more than 6 decimals", f"{label} x{fmt_dec(f)}")
            continue
        for x in current:
            x.batch_multiplier = f
            x.source = "genai-prices+litellm"
        stats["genai-prices models given a batch multiplier"] += 1
    # 3. Models genai-prices lacks.
    claimed: dict[str, set[str]] = defaultdict(set)
    for le in lacking:
        book = books.setdefault(le.provider, ProviderBook(le.provider))
        if le.name in claimed[le.provider]:
            rep.add("litellm duplicate names after prefix stripping (later dropped)", le.key)
            continue
        entry = litellm_prices(le, rep)
        if entry is None:
            continue
        f, why = litellm_batch_fraction(le.data)
        if f is not None:
            if batch_ok(entry, f):
                entry.batch_multiplier = f
            else:
                rep.add("batch multipliers not set: batch price would need more than 6 decimals", f"litellm {le.key} x{fmt_dec(f)}")
        elif why != "none":
            rep.add("batch multipliers not set: inconsistent litellm batch prices", f"litellm {le.key}: {why}")
        claimed[le.provider].add(le.name)
        book.models.append(Model(le.provider, le.name, [], [], [entry], "litellm", litellm_key=le.key))
        book.invalidate()
        stats["litellm models added"] += 1
    return stats


# ----------------------------------------------------------------------------------------------
# Name claims, consistency


def enforce_claims(books: dict[str, ProviderBook], rep: Report) -> None:
    """Within a provider a name (canonical or alias) belongs to one model: later claims drop."""
    for book in books.values():
        owner: dict[str, Model] = {}
        keep: list[Model] = []
        for m in book.models:
            if m.name in owner and owner[m.name] is not m:
                rep.add("models dropped: canonical name already claimed in the provider",
                        f"{book.pid}: {m.name} ({m.origin}) taken by {owner[m.name].name}")
                continue
            owner[m.name] = m
            kept = []
            for a in m.aliases:
                if a in owner and owner[a] is not m:
                    rep.add("aliases dropped: name already claimed in the provider",
                            f"{book.pid}: {a} of {m.name} taken by {owner[a].name}")
                    continue
                if a in kept:
                    continue
                kept.append(a)
            # Reserve all canonical names of later models first would reorder precedence; the
            # later model is dropped instead (reported above) -- keeps the rule simple.
            for a in kept:
                owner[a] = m
            m.aliases = kept
            keep.append(m)
        book.models = keep
        book.invalidate()


def consistency_check(books: dict[str, ProviderBook], entries: list[LEntry], rep: Report) -> Counter:
    """Compare Tollgate's resolution with genai-prices' own for every name we know of."""
    c: Counter = Counter()
    for book in books.values():
        names: list[str] = []
        for m in book.models:
            names += [m.name, *m.aliases]
        names += [le.name for le in entries if le.provider == book.pid]
        for n in dedup(names):
            ref = book.genai_resolve(n)
            if ref is None:
                continue
            got = book.resolve(n, written_only=True)
            if not ref.entries:
                if got is not None:
                    c["divergent"] += 1
                    rep.add("names the catalog resolves to a different model than genai-prices",
                            f"{book.pid}: {n} -> {got[0].name} ({got[1]}); genai-prices: {ref.name} (no price)")
                else:
                    c["unpriced in genai-prices too"] += 1
                continue
            if got is None:
                c["uncovered"] += 1
                rep.add("names genai-prices resolves but the catalog does not", f"{book.pid}: {n} (genai-prices: {ref.name})")
            elif got[0] is not ref:
                c["divergent"] += 1
                rep.add("names the catalog resolves to a different model than genai-prices",
                        f"{book.pid}: {n} -> {got[0].name} ({got[1]}); genai-prices: {ref.name}")
            else:
                c["agree"] += 1
    return c


# ----------------------------------------------------------------------------------------------
# TOML output


def toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_arr(xs: list[str]) -> str:
    return "[" + ", ".join(toml_str(x) for x in xs) + "]"


def iso(day: str | None) -> str | None:
    if day is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise SystemExit(f"error: unexpected date {day!r}")
    return f"{day}T00:00:00Z"


def rate_dicts(books: dict[str, ProviderBook]) -> list[tuple[dict, str | None]]:
    """The intended content, as tomllib would return it, with a comment for each entry."""
    out = []
    for pid in sorted(books):
        for m in books[pid].models:  # placeholders have no entries
            for e in m.entries:
                r: dict = {"provider": pid, "model": m.name}
                if m.aliases:
                    r["aliases"] = list(m.aliases)
                if m.patterns:
                    r["patterns"] = list(m.patterns)
                if e.effective_from:
                    r["effective_from"] = iso(e.effective_from)
                if e.effective_to:
                    r["effective_to"] = iso(e.effective_to)
                r["currency"] = "USD"
                for c in CLASSES:
                    if c in e.prices:
                        r[CLASS_KEY[c]] = fmt_dec(e.prices[c])
                if e.batch_multiplier is not None:
                    r["batch_multiplier"] = fmt_dec(e.batch_multiplier)
                r["source"] = e.source
                if e.tiers:
                    r["tier"] = [
                        {"above_input_tokens": thr, **{CLASS_KEY[c]: fmt_dec(tp[c]) for c in CLASSES if c in tp}}
                        for thr, tp in e.tiers
                    ]
                if e.per_unit:
                    r["per_unit"] = {k: fmt_dec(v) for k, v in e.per_unit.items()}
                note = None
                if m.origin.startswith("genai-prices fallback"):
                    note = f"{m.origin} (genai-prices prices models {m.origin.split()[2]} lacks as {m.origin.split()[-1]} does)"
                elif m.origin == "litellm" and m.litellm_key != m.name:
                    note = f"litellm key {m.litellm_key}"
                out.append((r, note))
    return out


def render(rates: list[dict], header: list[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    provider = None
    for r, note in rates:
        if r["provider"] != provider:
            provider = r["provider"]
            lines += ["", f"# ======== provider: {provider} ========"]
        lines.append("")
        if note:
            lines.append(f"# {note}")
        lines.append("[[rate]]")
        for k, v in r.items():
            if k in ("tier", "per_unit"):
                continue
            if isinstance(v, list):
                lines.append(f"{k} = {toml_arr(v)}")
            else:
                lines.append(f"{k} = {toml_str(v)}")
        for t in r.get("tier", []):
            lines.append("")
            lines.append("[[rate.tier]]")
            for k, v in t.items():
                lines.append(f"{k} = {v}" if isinstance(v, int) else f"{k} = {toml_str(v)}")
        if "per_unit" in r:
            lines.append("")
            lines.append("[rate.per_unit]")
            for k, v in r["per_unit"].items():
                key = k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_str(k)
                lines.append(f"{key} = {toml_str(v)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Validation (mirrors the Rust loader's rules)


DEC_RX = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def validate(rates: list[dict]) -> None:
    errors = []
    names: dict[tuple[str, str], str] = {}
    periods: dict[tuple[str, str], list[tuple[str | None, str | None]]] = defaultdict(list)
    for i, r in enumerate(rates, 1):
        where = f"rate #{i} ({r['provider']}/{r['model']})"
        base = [c for c in CLASSES if CLASS_KEY[c] in r]
        if not base and not r.get("per_unit"):
            errors.append(f"{where}: no price")
        for c in base:
            s = r[CLASS_KEY[c]]
            if not DEC_RX.match(s) or scale_of(Decimal(s)) > MTOK_SCALE:
                errors.append(f"{where}: bad {CLASS_KEY[c]} {s!r}")
        for k, s in r.get("per_unit", {}).items():
            if not DEC_RX.match(s) or scale_of(Decimal(s)) > UNIT_SCALE:
                errors.append(f"{where}: bad per_unit.{k} {s!r}")
        thrs = [t["above_input_tokens"] for t in r.get("tier", [])]
        if thrs != sorted(set(thrs)):
            errors.append(f"{where}: tiers not strictly ascending")
        for t in r.get("tier", []):
            tc = [c for c in CLASSES if CLASS_KEY[c] in t]
            if tc != base:
                errors.append(f"{where}: tier {t['above_input_tokens']} prices {tc}, base prices {base}")
            for c in tc:
                if not DEC_RX.match(t[CLASS_KEY[c]]) or scale_of(Decimal(t[CLASS_KEY[c]])) > MTOK_SCALE:
                    errors.append(f"{where}: bad tier price {t[CLASS_KEY[c]]!r}")
        if "batch_multiplier" in r:
            m = Decimal(r["batch_multiplier"])
            if not (0 < m <= 1) or scale_of(m) > BATCH_SCALE:
                errors.append(f"{where}: bad batch_multiplier {m}")
            for p in [r] + r.get("tier", []):
                for c in base:
                    if scale_of(Decimal(p[CLASS_KEY[c]]) * m) > MTOK_SCALE:
                        errors.append(f"{where}: batch price of {c} needs more than {MTOK_SCALE} places")
        for p in r.get("patterns", []):
            if p in ("", "*"):
                errors.append(f"{where}: pattern {p!r} matches everything")
        for n in [r["model"], *r.get("aliases", [])]:
            other = names.setdefault((r["provider"], n), r["model"])
            if other != r["model"]:
                errors.append(f"{where}: name {n!r} already belongs to {other!r}")
        if r.get("effective_from") and r.get("effective_to") and r["effective_to"] <= r["effective_from"]:
            errors.append(f"{where}: empty interval")
        periods[(r["provider"], r["model"])].append((r.get("effective_from"), r.get("effective_to")))
    for key, ps in periods.items():
        ps.sort(key=lambda p: (p[0] is not None, p[0] or ""))
        for a, b in zip(ps, ps[1:]):
            if a[1] is None or b[0] is None or b[0] < a[1]:
                errors.append(f"{key[0]}/{key[1]}: overlapping periods {a} and {b}")
    if errors:
        for e in errors[:50]:
            print(f"error: {e}", file=sys.stderr)
        raise SystemExit(f"error: {len(errors)} validation errors; catalog not written")


# ----------------------------------------------------------------------------------------------


def source_versions(prices_dir: Path, genai: dict) -> tuple[str, str]:
    genai_v = "0.2.3"
    m = re.search(r"genai-prices==([0-9][0-9.]*[0-9])", json.dumps(genai.get("source", {})))
    if m:
        genai_v = m.group(1)
    litellm_v = "1.109.1"
    readme = prices_dir / "README.md"
    if readme.exists():
        m = re.search(r"LiteLLM ([0-9]+\.[0-9]+\.[0-9]+)", readme.read_text(encoding="utf-8"))
        if m:
            litellm_v = m.group(1)
    return genai_v, litellm_v


def load_json(path: Path):
    with path.open(encoding="utf-8") as f:
        return json.load(f, parse_float=Decimal, parse_int=Decimal)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prices-dir", type=Path, default=DEFAULT_PRICES_DIR,
                    help="directory with the two source catalogs (default: ../shared/data/prices "
                         "relative to the repository root)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output TOML (default: crates/tollgate-core/catalog/catalog.toml); the "
                         "license files are copied next to it")
    ap.add_argument("--verbose", action="store_true", help="list every skipped or adjusted item")
    args = ap.parse_args(argv)

    prices_dir: Path = args.prices_dir
    for f in (GENAI_FILE, LITELLM_FILE, *LICENSES):
        if not (prices_dir / f).exists():
            raise SystemExit(f"error: {prices_dir / f} not found (use --prices-dir)")
    genai = load_json(prices_dir / GENAI_FILE)
    litellm = load_json(prices_dir / LITELLM_FILE)
    rep = Report(args.verbose)

    books = build_genai(genai, rep)
    genai_providers = set(books)
    allowed = genai_providers | set(EXPLICIT_PROVIDERS)
    lentries = litellm_entries(litellm, allowed, rep)
    enforce_claims(books, rep)
    lstats = apply_litellm(books, lentries, rep)
    enforce_claims(books, rep)
    books = {k: v for k, v in books.items() if any(m.entries for m in v.models)}
    check = consistency_check(books, lentries, rep)

    genai_v, litellm_v = source_versions(prices_dir, genai)
    header = [
        "Tollgate shipped rate catalog.",
        f"Generated by scripts/gen_catalog.py from genai-prices {genai_v} and LiteLLM {litellm_v} (both MIT;",
        "see GENAI_PRICES_LICENSE and LITELLM_LICENSE next to this file). Do not edit; regenerate with",
        "`python3 scripts/gen_catalog.py`. Prices are USD per million tokens; where both sources price",
        "a model, genai-prices wins (see README.md). A local override file wins over this catalog.",
    ]
    annotated = rate_dicts(books)
    rates = [r for r, _ in annotated]
    validate(rates)
    text = render(annotated, header)
    parsed = tomllib.loads(text)
    if parsed != {"rate": rates}:
        raise SystemExit("error: TOML round-trip mismatch; catalog not written")

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    tmp.replace(out)
    for lic in LICENSES:
        shutil.copyfile(prices_dir / lic, out.parent / lic)

    # ---- summary ----
    src = Counter(r["source"] for r in rates)
    models = {(r["provider"], r["model"]) for r in rates}
    per_provider = Counter(p for p, _ in models)
    err = sys.stderr
    print(f"gen_catalog: wrote {out} ({len(text.encode())} bytes)", file=err)
    print(f"  sources: genai-prices {genai_v}, LiteLLM {litellm_v}", file=err)
    print(f"  providers: {len(per_provider)}; models: {len(models)}; rate entries: {len(rates)}", file=err)
    print("  rate entries by source: " + ", ".join(f"{k} {v}" for k, v in sorted(src.items())), file=err)
    print(f"  entries with tiers: {sum(1 for r in rates if 'tier' in r)}; with per_unit: "
          f"{sum(1 for r in rates if 'per_unit' in r)}; with batch_multiplier: "
          f"{sum(1 for r in rates if 'batch_multiplier' in r)}; dated entries: "
          f"{sum(1 for r in rates if 'effective_from' in r or 'effective_to' in r)}", file=err)
    print("  models per provider: " + ", ".join(f"{p} {n}" for p, n in sorted(per_provider.items())), file=err)
    for k in sorted(lstats):
        print(f"  {k}: {lstats[k]}", file=err)
    print(f"  name resolution vs genai-prices' own rules: {check['agree']} agree, "
          f"{check['divergent']} resolve to a different model, {check['uncovered']} not covered, "
          f"{check['unpriced in genai-prices too']} unpriced in both", file=err)
    print("  skipped / adjusted:", file=err)
    always = {
        "genai-prices match clauses not expressible as globs",
        "genai-prices time-of-day periods skipped",
    }
    for reason in sorted(rep.counts):
        print(f"    {reason}: {rep.counts[reason]}", file=err)
        for line in rep.lines(reason, always=reason in always):
            print(line, file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
