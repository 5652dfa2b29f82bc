"""The local, dated model pricing table and the cost of token usage.

Prices live in ``exporter/data/pricing.yaml`` (USD per million tokens, with the date they were
taken). A user table, given as a path or in ``$BATCH_METRICS_PRICING``, is merged over the
built-in one model by model. Nothing is fetched from the network.

Token counts follow the OpenTelemetry GenAI conventions: input tokens include the input tokens
served from the prompt cache, which are charged at the cache-read price (or the input price when
a model has none). A model missing from the table is *unpriced*: its cost is ``None``, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from exporter.archive.model import CostSource
from exporter.util.datafile import load_data_file
from exporter.util.settings import path_setting

__all__ = [
    "ENV_VAR",
    "Cost",
    "ModelPrice",
    "PricingTable",
    "combine_sources",
    "default_pricing",
    "load_pricing",
]

ENV_VAR: Final = "BATCH_METRICS_PRICING"
_PER: Final = 1_000_000


class ModelPrice(BaseModel):
    """Prices of one model in USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, allow_inf_nan=False)
    output: float = Field(ge=0, allow_inf_nan=False)
    cache_read: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    aliases: tuple[str, ...] = ()

    def estimate(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0) -> float:
        """USD for the given usage; ``input_tokens`` includes ``cache_read_tokens``."""
        cached = min(cache_read_tokens, input_tokens)
        cache_price = self.input if self.cache_read is None else self.cache_read
        return (
            (input_tokens - cached) * self.input
            + cached * cache_price
            + output_tokens * self.output
        ) / _PER


class _PricingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: date
    currency: str = Field(default="USD", pattern=r"^USD$")
    models: dict[str, ModelPrice] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of some usage and where it comes from (``usd`` is None when unpriced)."""

    usd: float | None
    source: CostSource


class PricingTable:
    """Model prices with alias lookup; build one with :func:`load_pricing`."""

    def __init__(self, as_of: date, models: dict[str, ModelPrice]) -> None:
        self.as_of = as_of
        self.models = dict(models)
        self._index: dict[str, ModelPrice] = {}
        for name, price in self.models.items():
            for key in (name, *price.aliases):
                self._index[key.lower()] = price

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model`` (name or alias, case-insensitive), or None if unknown."""
        return self._index.get(model.lower())

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        *,
        provider_usd: float | None = None,
    ) -> Cost:
        """Cost of one usage: the provider's figure when reported, else the table's estimate."""
        if provider_usd is not None:
            return Cost(provider_usd, "provider")
        price = self.price(model)
        if price is None:
            return Cost(None, "unpriced")
        return Cost(price.estimate(input_tokens, output_tokens, cache_read_tokens), "estimate")

    def merged(self, other: PricingTable) -> PricingTable:
        """This table with ``other``'s models (and date) laid over it."""
        models = dict(self.models)
        overridden = {key.lower() for name, p in other.models.items() for key in (name, *p.aliases)}
        for name, price in list(models.items()):
            if {k.lower() for k in (name, *price.aliases)} & overridden:
                del models[name]
        models.update(other.models)
        return PricingTable(other.as_of, models)


def combine_sources(sources: list[CostSource]) -> CostSource:
    """One source for several priced parts: the common one, or ``mixed``.

    Unpriced parts are left out (they are listed apart); all unpriced gives ``unpriced``.
    """
    priced = {s for s in sources if s != "unpriced"}
    if not priced:
        return "unpriced"
    if len(priced) == 1:
        return priced.pop()
    return "mixed"


def _table(path: Path | None) -> PricingTable:
    data = load_data_file(_PricingFile, "pricing.yaml", path, kind="pricing")
    return PricingTable(data.as_of, data.models)


@cache
def default_pricing() -> PricingTable:
    """The table shipped with the package."""
    return _table(None)


def load_pricing(path: Path | None = None) -> PricingTable:
    """The built-in table, with ``path`` (else ``$BATCH_METRICS_PRICING``) merged over it."""
    if path is None:
        path = path_setting("PRICING")
    table = default_pricing()
    return table if path is None else table.merged(_table(path))
