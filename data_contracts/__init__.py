"""Data contracts: one pandera schema per asset, enforced by blocking asset checks.

``CONTRACTS`` maps an asset name (last part of its key) to its schema; embedding assets share
:func:`embedding_schema` (parametrised by dimension).
"""

from data_contracts.catalog import CatalogItems, CatalogQuarantine, RawCatalog
from data_contracts.embeddings import embedding_schema
from data_contracts.images import OcrText, ProductImages
from data_contracts.models import BlendWeights
from data_contracts.serving import PriceDrivers, PriceExplanations, ServedAccuracy, ServedPrices
from data_contracts.training import (
    BatchPredictions,
    FeatureMatrix,
    KnnFeatures,
    ListingFeatures,
    ModelPredictions,
    PricePredictions,
    Products,
)

CONTRACTS = {
    "raw_catalog": RawCatalog,
    "catalog_quarantine": CatalogQuarantine,
    "catalog_items": CatalogItems,
    "product_images": ProductImages,
    "ocr_text": OcrText,
    "products": Products,
    "listing_features": ListingFeatures,
    "knn_features": KnnFeatures,
    "feature_matrix": FeatureMatrix,
    "model_predictions": ModelPredictions,
    "promoted_blend": ModelPredictions,
    "blend_weights": BlendWeights,
    "batch_predictions": BatchPredictions,
    "price_predictions": PricePredictions,
    "served_prices": ServedPrices,
    "price_explanations": PriceExplanations,
    "price_drivers": PriceDrivers,
    "served_accuracy": ServedAccuracy,
}

#: Groups whose ``*_predictions`` assets are out-of-fold model predictions (``ModelPredictions``).
MODEL_GROUPS = ("models",)


def contract_for(asset_name: str, group: str | None = None):
    """The pandera schema of the asset ``asset_name`` (last part of its key), or ``None``.

    ``CONTRACTS`` by name; every ``*_predictions`` asset of a model group and ``price_blend`` share
    ``ModelPredictions``. Embedding assets carry their schema themselves (``embedding_schema(dim)``).
    """
    if asset_name in CONTRACTS:
        return CONTRACTS[asset_name]
    if group in MODEL_GROUPS and (asset_name.endswith("_predictions") or asset_name == "price_blend"):
        return ModelPredictions
    return None


__all__ = ["CONTRACTS", "contract_for", "embedding_schema"]
