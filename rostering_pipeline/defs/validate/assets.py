import functools
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from rostering_pipeline.defs import stages
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.lea_settings import LeaSettingsResource
from rostering_pipeline.quality import record_rejections, rule_counts
from rostering_pipeline.upload_spec.files import BY_ENTITY, ENTITIES
from rostering_pipeline.upload_spec.validate import validate_upload
from rostering_pipeline.uploads import Upload
from rostering_pipeline.validated_frames import to_frames
from rostering_pipeline.warehouse import WarehouseResource
from rostering_pipeline.warehouse.roster import other_leas_logins

UPLOAD_ACCEPTED = "upload_accepted"


@dg.multi_asset(
    outs={
        **{
            f"validated_{entity}": dg.AssetOut(
                description=BY_ENTITY[entity].description,
                group_name=stages.VALIDATE,
                kinds={"polars"},
                owners=["team:rostering"],
            )
            for entity in ENTITIES
        },
        "upload_rejections": dg.AssetOut(
            description="Every rejected row, file or upload fault of the upload, with its place "
            "and fix; also written to quality.rejections.",
            group_name=stages.VALIDATE,
            kinds={"polars", "duckdb"},
            owners=["team:rostering"],
        ),
    },
    partitions_def=lea_partitions,
    check_specs=[
        dg.AssetCheckSpec(
            UPLOAD_ACCEPTED,
            asset="upload_rejections",
            partitions_def=lea_partitions,
            description="Warns when the LEA's latest upload was rejected as a whole (a missing "
            "file or column, an unreadable file, another LEA's campus): its roster was left "
            "as it was, and the LEA has been told what to fix.",
        )
    ],
    ins={"raw_upload": dg.AssetIn()},
    # Validation is CPU work that runs of different LEAs overlap; its two short warehouse
    # visits wait out DuckDB's lock (WarehouseResource.connect), as every step's do.
)
def validated_tables(
    context: dg.AssetExecutionContext,
    raw_upload: Upload,
    warehouse: WarehouseResource,
    lea_settings: LeaSettingsResource,
):
    """The upload's files checked against every rule of UPLOAD_SPEC.md.

    Other LEAs' account logins are read first, so a staff email another LEA already uses is
    reported to this LEA as a conflict instead of being merged into that account.
    """
    upload = raw_upload
    validated = validate_upload(
        upload.lea_id,
        upload.read_files(),
        upload.received_at.date(),
        class_types=lea_settings.for_lea(upload.lea_id).oneroster_class_types,
        taken_logins=functools.partial(_logins_of_other_leas, warehouse, upload.lea_id),
    )
    with warehouse.connect() as conn:
        record_rejections(conn, upload, validated.rejections, datetime.now(UTC))
    frames = to_frames(validated)
    for entity in ENTITIES:
        frame = frames[entity]
        accepted = frame.filter(~pl.col("_rejected")).height
        yield dg.Output(
            frame,
            output_name=f"validated_{entity}",
            metadata={
                "dagster/row_count": accepted,
                "dagster/column_schema": _column_schema(entity, frame),
                "rejected_rows": frame.height - accepted,
                "upload_id": upload.upload_id,
            },
        )
    counts = rule_counts(validated.rejections)
    context.log.info(
        f"LEA {upload.lea_id}: upload {upload.upload_id} "
        f"{'accepted' if validated.accepted else 'rejected as a whole'}, "
        f"{validated.rejections.height} rejections"
    )
    faults = validated.rejections.filter(pl.col("level") == "upload")
    yield dg.AssetCheckResult(
        check_name=UPLOAD_ACCEPTED,
        asset_key="upload_rejections",
        passed=validated.accepted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "lea_id": upload.lea_id,
            "upload_id": upload.upload_id,
            "faults": dg.MetadataValue.json(
                [f"{r['file']}: {r['rule']}" for r in faults.iter_rows(named=True)]
            ),
        },
    )
    yield dg.Output(
        validated.rejections,
        output_name="upload_rejections",
        metadata={
            "dagster/row_count": validated.rejections.height,
            "upload_accepted": validated.accepted,
            "rejections_by_rule": dg.MetadataValue.json(counts),
            "upload_id": upload.upload_id,
        },
    )


def _logins_of_other_leas(
    warehouse: WarehouseResource, lea_id: str, among: frozenset[str]
) -> frozenset[str]:
    """Which of the upload's lower-cased staff emails are logins of other LEAs' active
    accounts (a read-only look before validating); an inactive account's login passes to the
    LEA that lists it now."""
    with warehouse.connect(read_only=True) as conn:
        return other_leas_logins(conn, lea_id, among)


def _column_schema(entity: str, frame: pl.DataFrame) -> dg.TableSchema:
    spec = BY_ENTITY[entity]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                str(frame.schema[name]),
                description=("key; " if name in spec.key else "")
                + ("required" if name in spec.required_columns else "optional")
                if name in spec.columns
                else {
                    "_line": "line of the row in the LEA's file",
                    "_rejected": "true for the key of a rejected row",
                }.get(name),
            )
            for name in frame.columns
        ]
    )
