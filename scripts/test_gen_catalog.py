"""Tests for scripts/gen_catalog.py.

Run from the repository root:  python3 -m unittest scripts/test_gen_catalog.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import tomllib
import unittest
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gen_catalog.py"
PRICES = REPO / ".." / "shared" / "data" / "prices"
SHIPPED = REPO / "crates" / "tollgate-core" / "catalog" / "catalog.toml"

PRICE_KEYS = (
    "input_per_mtok",
    "cache_read_per_mtok",
    "cache_write_per_mtok",
    "cache_write_1h_per_mtok",
    "output_per_mtok",
)
RATE_KEYS = {
    "provider", "model", "aliases", "patterns", "effective_from", "effective_to", "currency",
    *PRICE_KEYS, "batch_multiplier", "source", "tier", "per_unit",
}
TIER_KEYS = {"above_input_tokens", *PRICE_KEYS}
DECIMAL_RX = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")  # canonical: no exponent, no trailing zeros


def places(s: str) -> int:
    return len(s.split(".", 1)[1]) if "." in s else 0


def run_generator(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--prices-dir", str(PRICES), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )


@unittest.skipUnless((PRICES / "genai_prices_catalog.json").exists(), f"source data not found in {PRICES}")
class GenCatalogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = Path(cls._tmp.name)
        cls.out1 = tmp / "a" / "catalog.toml"
        cls.out2 = tmp / "b" / "catalog.toml"
        cls.run1 = run_generator(cls.out1)
        cls.run2 = run_generator(cls.out2)
        if cls.run1.returncode != 0:
            raise AssertionError(f"generator failed:\n{cls.run1.stderr}")
        cls.text = cls.out1.read_text(encoding="utf-8")
        cls.rates = tomllib.loads(cls.text)["rate"]

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def find(self, provider: str, model: str) -> list[dict]:
        return [r for r in self.rates if r["provider"] == provider and r["model"] == model]

    def current(self, provider: str, model: str) -> dict:
        rs = [r for r in self.find(provider, model) if "effective_to" not in r]
        self.assertEqual(len(rs), 1, f"{provider}/{model}: expected one open-ended entry")
        return rs[0]

    # -- output files ----------------------------------------------------------------------

    def test_deterministic(self):
        self.assertEqual(self.run2.returncode, 0, self.run2.stderr)
        self.assertEqual(self.out1.read_bytes(), self.out2.read_bytes())

    def test_licenses_copied(self):
        for name in ("GENAI_PRICES_LICENSE", "LITELLM_LICENSE"):
            text = (self.out1.parent / name).read_text(encoding="utf-8")
            self.assertIn("MIT License", text)
            self.assertIn("Permission is hereby granted", text)

    def test_header_and_summary(self):
        self.assertTrue(self.text.startswith("# "))
        self.assertIn("genai-prices 0.2.3", self.text.splitlines()[1])
        self.assertIn("LiteLLM 1.109.1", self.text.splitlines()[1])
        self.assertIn("rate entries:", self.run1.stderr)

    def test_shipped_catalog_is_up_to_date(self):
        if not SHIPPED.exists():
            self.skipTest("no shipped catalog yet")
        self.assertEqual(
            SHIPPED.read_bytes(), self.out1.read_bytes(),
            "crates/tollgate-core/catalog/catalog.toml is stale: run python3 scripts/gen_catalog.py",
        )

    # -- sanity values ---------------------------------------------------------------------

    def test_gpt_4o(self):
        r = self.current("openai", "gpt-4o")
        self.assertEqual(r["currency"], "USD")
        self.assertEqual(Decimal(r["input_per_mtok"]), Decimal("2.5"))
        self.assertEqual(Decimal(r["cache_read_per_mtok"]), Decimal("1.25"))
        self.assertEqual(Decimal(r["output_per_mtok"]), Decimal("10"))
        self.assertEqual(r["input_per_mtok"], "2.5")  # canonical spelling

    def test_claude_sonnet_4_5(self):
        r = self.current("anthropic", "claude-sonnet-4-5")
        expect = {
            "input_per_mtok": "3",
            "output_per_mtok": "15",
            "cache_read_per_mtok": "0.3",
            "cache_write_per_mtok": "3.75",
            "cache_write_1h_per_mtok": "6",
        }
        for k, v in expect.items():
            self.assertEqual(r[k], v, k)
        self.assertIn(200000, [t["above_input_tokens"] for t in r.get("tier", [])])

    def test_dated_change(self):
        rs = self.find("openai", "o3")
        self.assertEqual(len(rs), 2)
        self.assertEqual(rs[0]["effective_to"], rs[1]["effective_from"])

    # -- format invariants (what the Rust loader enforces) -----------------------------------

    def test_only_known_keys(self):
        for r in self.rates:
            self.assertLessEqual(set(r), RATE_KEYS, r["model"])
            for t in r.get("tier", []):
                self.assertLessEqual(set(t), TIER_KEYS, r["model"])

    def test_prices_are_decimal_strings_with_at_most_6_places(self):
        n = 0
        for r in self.rates:
            for table in [r, *r.get("tier", [])]:
                for k in PRICE_KEYS:
                    if k not in table:
                        continue
                    s = table[k]
                    self.assertIsInstance(s, str, f"{r['model']} {k}")
                    self.assertRegex(s, DECIMAL_RX, f"{r['provider']}/{r['model']} {k}")
                    try:
                        d = Decimal(s)
                    except InvalidOperation:
                        self.fail(f"{r['model']} {k}={s!r} is not a decimal")
                    self.assertGreaterEqual(d, 0)
                    self.assertLessEqual(places(s), 6, f"{r['provider']}/{r['model']} {k}={s}")
                    n += 1
            for k, s in r.get("per_unit", {}).items():
                self.assertRegex(s, DECIMAL_RX)
                self.assertLessEqual(places(s), 9, f"{r['model']} per_unit.{k}")
        self.assertGreater(n, 1000)

    def test_every_rate_has_a_price(self):
        for r in self.rates:
            self.assertTrue(any(k in r for k in PRICE_KEYS) or r.get("per_unit"), r["model"])

    def test_tiers_sorted_and_complete(self):
        for r in self.rates:
            tiers = r.get("tier", [])
            thresholds = [t["above_input_tokens"] for t in tiers]
            self.assertEqual(thresholds, sorted(set(thresholds)), r["model"])
            base = {k for k in PRICE_KEYS if k in r}
            for t in tiers:
                self.assertIsInstance(t["above_input_tokens"], int)
                self.assertEqual({k for k in PRICE_KEYS if k in t}, base, r["model"])

    def test_batch_multiplier(self):
        for r in self.rates:
            if "batch_multiplier" not in r:
                continue
            m = Decimal(r["batch_multiplier"])
            self.assertTrue(0 < m <= 1, r["model"])
            for table in [r, *r.get("tier", [])]:
                for k in PRICE_KEYS:
                    if k in table:
                        self.assertLessEqual(places(format((Decimal(table[k]) * m).normalize(), "f")), 6)

    def test_no_overlapping_intervals(self):
        periods = defaultdict(list)
        for r in self.rates:
            periods[(r["provider"], r["model"])].append((r.get("effective_from"), r.get("effective_to")))
        for key, ps in periods.items():
            for f, t in ps:
                if f and t:
                    self.assertLess(f, t, key)
                for s in (f, t):
                    if s:
                        self.assertRegex(s, r"^\d{4}-\d{2}-\d{2}T00:00:00Z$")
            ps.sort(key=lambda p: (p[0] is not None, p[0] or ""))
            for (f1, t1), (f2, t2) in zip(ps, ps[1:]):
                self.assertIsNotNone(t1, f"{key}: open-ended entry followed by another")
                self.assertIsNotNone(f2, f"{key}: two entries open at the start")
                self.assertLessEqual(t1, f2, f"{key}: {t1} > {f2}")

    def test_names_unique_per_provider(self):
        owner: dict[tuple[str, str], str] = {}
        for r in self.rates:
            for n in [r["model"], *r.get("aliases", [])]:
                prev = owner.setdefault((r["provider"], n), r["model"])
                self.assertEqual(prev, r["model"], f"{r['provider']}: {n!r} claimed by {prev!r} and {r['model']!r}")

    def test_patterns_are_not_catch_all(self):
        for r in self.rates:
            for p in r.get("patterns", []):
                self.assertNotIn(p, ("", "*"))


if __name__ == "__main__":
    unittest.main()
