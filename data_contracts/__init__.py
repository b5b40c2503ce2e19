"""Data contracts: one pandera schema per asset, enforced by blocking asset checks.

``CONTRACTS`` maps an asset name (last part of its key) to its schema; embedding assets share
:func:`embedding_schema` (parametrised by dimension).
"""

from data_contracts.catalog import CatalogItems, CatalogQuarantine, RawCatalog
from data_contracts.embeddings import embedding_schema
from data_contracts.images import OcrText, ProductImages
from data_contracts.training import (
    BatchPredictions,
    BrandFeatures,
    FeatureMatrix,
    KnnFeatures,
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
    "brand_features": BrandFeatures,
    "knn_features": KnnFeatures,
    "feature_matrix": FeatureMatrix,
    "model_predictions": ModelPredictions,
    "batch_predictions": BatchPredictions,
    "price_predictions": PricePredictions,
}

__all__ = ["CONTRACTS", "embedding_schema"]
