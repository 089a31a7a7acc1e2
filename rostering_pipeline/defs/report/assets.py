import dagster as dg
import polars as pl

from rostering_pipeline.decision import UploadDecision
from rostering_pipeline.defs import stages
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.outbox import deliver_report
from rostering_pipeline.quality import rule_counts
from rostering_pipeline.sftp import SftpError, SftpResource
from rostering_pipeline.uploads import Upload


@dg.asset(
    partitions_def=lea_partitions,
    group_name=stages.REPORT,
    kinds={"sftp"},
    owners=["team:rostering"],
    ins={
        "raw_upload": dg.AssetIn(),
        "applied_roster": dg.AssetIn(),
        "upload_rejections": dg.AssetIn(),
    },
)
def sync_report(
    context: dg.AssetExecutionContext,
    sftp: SftpResource,
    raw_upload: Upload,
    applied_roster: UploadDecision,
    upload_rejections: pl.DataFrame,
) -> dg.MaterializeResult:
    """The sync report and rejections CSV the LEA finds in its outbox/ after every upload."""
    try:
        paths = deliver_report(sftp, raw_upload, applied_roster, upload_rejections)
    except SftpError as error:  # a permission, or a link in place of the outbox
        raise dg.Failure(
            f"LEA {raw_upload.lea_id}: {error}", metadata={"lea_id": raw_upload.lea_id}
        ) from error
    context.log.info(f"LEA {raw_upload.lea_id}: report written to {paths[0]}")
    return dg.MaterializeResult(
        metadata={
            "report_path": dg.MetadataValue.path(paths[0]),
            "rejections_path": dg.MetadataValue.path(paths[1]),
            "decision": applied_roster.decision,
            "rejected_rows": upload_rejections.filter(pl.col("level") == "row").height,
            "rejections_by_rule": dg.MetadataValue.json(rule_counts(upload_rejections)),
            "upload_id": raw_upload.upload_id,
        }
    )
