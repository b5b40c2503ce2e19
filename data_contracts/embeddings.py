"""Contract of every embedding asset: ids, embedding-cache keys and (n, dim) L2-normalised vectors."""

import numpy as np
import pandera.pandas as pa


def embedding_schema(dim: int) -> pa.DataFrameSchema:
    """Schema for an embedding DataFrame: ``sample_id`` (unique str), ``cache_key`` (str: sha256 hex of the input embedded, the key of the embedding cache),
    ``embedding`` (a length-``dim`` float vector per row, finite, L2 norm within 1e-3 of 1)."""

    def _vectors_ok(s) -> bool:
        if len(s) == 0:
            return True
        m = np.stack(s.to_numpy())
        return (
            m.shape[1] == dim
            and bool(np.isfinite(m).all())
            and bool(np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-3))
        )

    return pa.DataFrameSchema(
        {
            "sample_id": pa.Column(str, unique=True),
            "cache_key": pa.Column(str),
            "embedding": pa.Column(
                object, pa.Check(_vectors_ok, element_wise=False, name=f"finite_unit_vectors_of_dim_{dim}")
            ),
        },
        name=f"embeddings_dim{dim}",
    )
