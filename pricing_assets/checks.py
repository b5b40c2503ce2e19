"""Blocking asset checks built from the pandera contracts in ``data_contracts/``.

Every asset declares ``check_specs=[contract_spec(key)]`` and enforces its contract **before** its
output is stored (Dagster stores an output as soon as it is yielded, and a failing blocking check
does not undo that), so data that fails its contract never reaches storage nor any consumer:

    check = enforce_contract(df, Schema, key)   # raises ContractViolation (a dg.Failure) when invalid
    yield dg.Output(df, metadata=...)
    yield check                                 # the passing ``contract`` check result

A violation fails the step with the failure cases in its metadata; the asset keeps its previous
materialization (for a batch partition: none, so the global assets skip that batch), the run fails
and automation does not fire on the failed asset.
"""

import dagster as dg
import pandas as pd
import pandera.errors

CONTRACT_CHECK = "contract"
#: Name of the blocking check on ``price_blend`` that keeps a worse retrain from being promoted (``lib.models.model_gate``).
MODEL_GATE_CHECK = "model_gate"


def contract_spec(asset_key, description: str = "pandera contract from data_contracts/") -> dg.AssetCheckSpec:
    """The blocking ``contract`` check spec for ``asset_key`` (str, list or AssetKey)."""
    return dg.AssetCheckSpec(
        CONTRACT_CHECK, asset=dg.AssetKey.from_coercible(asset_key), blocking=True, description=description
    )


def column_schema(schema) -> dg.TableSchema:
    """``dagster/column_schema`` of a pandera ``DataFrameModel`` class or ``DataFrameSchema``:
    one column per contract column with its dtype, ``nullable`` constraint and description."""
    df_schema = schema.to_schema() if hasattr(schema, "to_schema") else schema
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(name),
                type=str(col.dtype),
                description=col.description,
                constraints=dg.TableColumnConstraints(nullable=bool(col.nullable), unique=bool(col.unique)),
            )
            for name, col in df_schema.columns.items()
        ]
    )


def validate_contract(df: pd.DataFrame, schema) -> pd.DataFrame | None:
    """Run ``schema`` (pandera DataFrameModel class or DataFrameSchema) lazily on ``df``.

    Returns:
        None when valid, else the failure cases (DataFrame with schema_context, column, check,
        failure_case, index).
    """
    try:
        schema.validate(df, lazy=True)
        return None
    except pandera.errors.SchemaErrors as e:
        return e.failure_cases
    except pandera.errors.SchemaError as e:  # non-lazy errors, e.g. wrong type of object
        return pd.DataFrame(
            [
                {
                    "schema_context": "DataFrameSchema",
                    "column": None,
                    "check": str(e),
                    "failure_case": None,
                    "index": None,
                }
            ]
        )


def _result(df: pd.DataFrame, key: dg.AssetKey, failures: pd.DataFrame | None) -> dg.AssetCheckResult:
    if failures is None:
        return dg.AssetCheckResult(check_name=CONTRACT_CHECK, asset_key=key, passed=True, metadata={"rows": len(df)})
    return dg.AssetCheckResult(
        check_name=CONTRACT_CHECK,
        asset_key=key,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=_failure_metadata(df, failures),
    )


def _failure_metadata(df: pd.DataFrame, failures: pd.DataFrame) -> dict:
    head = failures.head(20).astype(str)
    return {
        "rows": len(df),
        "failures": len(failures),
        "failure_cases": dg.MetadataValue.md(head.to_markdown(index=False)),
    }


def contract_result(df: pd.DataFrame, schema, asset_key) -> dg.AssetCheckResult:
    """AssetCheckResult of the ``contract`` check: passed, or failed with the first failure cases.

    Prefer :func:`enforce_contract` in assets: it refuses to let an invalid frame be stored.
    """
    return _result(df, dg.AssetKey.from_coercible(asset_key), validate_contract(df, schema))


class ContractViolation(dg.Failure):
    """An asset's output failed its pandera contract; raised before the output is stored.

    ``metadata`` holds ``rows``, ``failures`` and the first 20 ``failure_cases`` (markdown). Never
    retried (``allow_retries=False``): the same inputs violate the contract again, so a step
    ``RetryPolicy`` (``product_images`` has one for network faults) must not run the step twice more.
    """

    def __init__(self, description: str, metadata: dict | None = None):
        super().__init__(description=description, metadata=metadata, allow_retries=False)


def enforce_contract(df: pd.DataFrame, schema, asset_key) -> dg.AssetCheckResult:
    """Validate ``df`` against ``schema`` before it is stored.

    Args:
        df: the asset's output frame.
        schema: pandera DataFrameModel class or DataFrameSchema (``data_contracts``).
        asset_key: str, list or AssetKey of the asset.

    Returns:
        the passing ``contract`` AssetCheckResult, to yield after the ``dg.Output``.

    Raises:
        ContractViolation: when the frame violates the contract; the message names the asset, the
            number of failure cases and the first columns/checks that failed.
    """
    key = dg.AssetKey.from_coercible(asset_key)
    failures = validate_contract(df, schema)
    if failures is None:
        return _result(df, key, None)
    first = failures.head(5)
    what = "; ".join(
        f"{c}: {chk} (e.g. {case!r})"
        for c, chk, case in zip(first.get("column", [None] * len(first)), first["check"], first["failure_case"])
    )
    raise ContractViolation(
        description=f"{key.to_user_string()}: {len(failures)} contract failure(s), nothing stored: {what}"[:2000],
        metadata=_failure_metadata(df, failures),
    )
