"""Blocking asset checks built from the pandera contracts in ``data_contracts/``.

Each asset declares ``check_specs=[contract_spec(key)]`` and yields :func:`contract_result` after its
output: a failing contract is an ERROR-severity blocking check, so downstream assets in the run don't
execute, and automation waits (``AutomationCondition.all_deps_blocking_checks_passed``).
"""

import dagster as dg
import pandas as pd
import pandera.errors

CONTRACT_CHECK = "contract"


def contract_spec(asset_key, description: str = "pandera contract from data_contracts/") -> dg.AssetCheckSpec:
    """The blocking ``contract`` check spec for ``asset_key`` (str, list or AssetKey)."""
    return dg.AssetCheckSpec(CONTRACT_CHECK, asset=dg.AssetKey.from_coercible(asset_key), blocking=True, description=description)


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
        return pd.DataFrame([{"schema_context": "DataFrameSchema", "column": None, "check": str(e), "failure_case": None, "index": None}])


def contract_result(df: pd.DataFrame, schema, asset_key) -> dg.AssetCheckResult:
    """AssetCheckResult of the ``contract`` check: passed, or failed with the first failure cases."""
    failures = validate_contract(df, schema)
    key = dg.AssetKey.from_coercible(asset_key)
    if failures is None:
        return dg.AssetCheckResult(check_name=CONTRACT_CHECK, asset_key=key, passed=True, metadata={"rows": len(df)})
    head = failures.head(20).astype(str)
    return dg.AssetCheckResult(
        check_name=CONTRACT_CHECK,
        asset_key=key,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": len(df),
            "failures": len(failures),
            "failure_cases": dg.MetadataValue.md(head.to_markdown(index=False)),
        },
    )

