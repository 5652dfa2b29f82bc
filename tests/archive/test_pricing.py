"""The dated pricing table: built-in prices, aliases, user overrides, unpriced models."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from exporter.archive.pricing import (
    ENV_VAR,
    Cost,
    ModelPrice,
    combine_sources,
    default_pricing,
    load_pricing,
)
from exporter.util.datafile import DataFileError


def test_builtin_table_is_dated_and_has_current_claude_and_openai_models() -> None:
    table = default_pricing()
    assert table.as_of == date(2026, 11, 29)
    sonnet = table.price("claude-sonnet-4-5-20250929")
    assert sonnet == table.price("claude-sonnet-4-5") == table.price("CLAUDE-SONNET-4-5")
    assert sonnet is not None
    assert (sonnet.input, sonnet.output, sonnet.cache_read) == (3.0, 15.0, 0.3)
    for model in ("claude-opus-4-5", "claude-opus-4-1", "claude-haiku-4-5", "gpt-4o", "gpt-5"):
        assert table.price(model) is not None, model
    opus = table.price("claude-opus-5-5")
    assert opus is not None and (opus.input, opus.output, opus.cache_read) == (4.0, 20.0, 0.2)
    # priced per request by prompt length, which a run's totals cannot tell: never guessed
    assert table.price("claude-haiku-5-5") is None


def test_estimate_charges_cache_reads_at_cache_price() -> None:
    price = ModelPrice(input=3.0, output=15.0, cache_read=0.3)
    # 1M input of which 400k cached, 100k output
    assert price.estimate(1_000_000, 100_000, 400_000) == pytest.approx(1.8 + 0.12 + 1.5)
    # more cached than input (inconsistent report) is capped at the input count
    assert price.estimate(100, 0, 1000) == pytest.approx(100 * 0.3 / 1e6)
    # no cache price: cached tokens cost the input price
    assert ModelPrice(input=2.0, output=0).estimate(500_000, 0, 500_000) == pytest.approx(1.0)


def test_unknown_model_is_unpriced_never_zero_and_provider_cost_wins() -> None:
    table = default_pricing()
    assert table.cost("no-such-model", 1000, 1000) == Cost(None, "unpriced")
    assert table.cost("no-such-model", 1000, 1000, provider_usd=0.02) == Cost(0.02, "provider")
    estimate = table.cost("claude-haiku-4-5", 1_000_000, 1_000_000)
    assert estimate.usd == pytest.approx(6.0)
    assert estimate.source == "estimate"
    assert table.cost("claude-haiku-4-5", 1_000_000, 0, provider_usd=0.7) == Cost(0.7, "provider")


def test_combine_sources() -> None:
    assert combine_sources([]) == "unpriced"
    assert combine_sources(["unpriced", "unpriced"]) == "unpriced"
    assert combine_sources(["estimate", "unpriced"]) == "estimate"
    assert combine_sources(["provider", "provider"]) == "provider"
    assert combine_sources(["provider", "estimate"]) == "mixed"
    assert combine_sources(["mixed"]) == "mixed"


def test_user_file_is_merged_over_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    override = tmp_path / "pricing.yaml"
    override.write_text(
        'as_of: "2026-01-15"\n'
        "models:\n"
        "  claude-sonnet-4-5:\n    input: 2.0\n    output: 10.0\n"
        "  in-house-llm:\n    input: 0.1\n    output: 0.2\n",
        encoding="utf-8",
    )
    table = load_pricing(override)
    assert table.as_of == date(2026, 1, 15)
    # the override's name was an alias of a built-in model: the user's price replaces it
    assert table.price("claude-sonnet-4-5") == ModelPrice(input=2.0, output=10.0)
    assert table.price("claude-sonnet-4-5-20250929") is None
    assert table.price("in-house-llm") == ModelPrice(input=0.1, output=0.2)
    assert table.price("claude-haiku-4-5") == default_pricing().price("claude-haiku-4-5")
    monkeypatch.setenv(ENV_VAR, str(override))
    assert load_pricing().price("in-house-llm") is not None
    monkeypatch.delenv(ENV_VAR)
    assert load_pricing().price("in-house-llm") is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("models: {}\n", "as_of"),
        ('as_of: "2026-01-01"\nmodels:\n  m: {input: -1, output: 1}\n', "greater than or equal"),
        ('as_of: "2026-01-01"\ncurrency: EUR\n', "currency"),
        ("as_of: [\n", "invalid pricing file"),
    ],
)
def test_invalid_user_file_is_one_clear_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFileError, match=reason) as caught:
        load_pricing(path)
    assert "\n" not in str(caught.value)


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="cannot read pricing file"):
        load_pricing(tmp_path / "absent.yaml")
