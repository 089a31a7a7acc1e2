"""The tags the pipeline puts on runs, in one place.

The Runs page shows what an operator looks for: `lea_id` and `upload_id` (the upload a run
received or replayed, added by raw_upload once the ledger has recorded it), beside Dagster's
own `dagster/partition`. Bookkeeping tags (the inbox listing's hash, process ids) start with
Dagster's hidden-tag prefix, `.dagster/`: the UI and its GraphQL API leave those out, while run
storage keeps and filters on them as on any tag. (One `/` only: Dagster deprecates tag keys
with more than one namespace section.)"""

#: Dagster's prefix for tags the UI does not show (dagster._core.storage.tags.HIDDEN_TAG_PREFIX;
#: test_run_tags fails if Dagster stops hiding it).
HIDDEN_TAG_PREFIX = ".dagster/"

#: The LEA a sensor run is for (Dagster's `dagster/partition` names it on every run too).
LEA_ID_TAG = "lea_id"
#: The upload a run took (`ingest.uploads.upload_id`): filter the Runs page on it.
UPLOAD_ID_TAG = "upload_id"
#: The upload a sync run is for, as the sensor names it before it is received (the inbox
#: listing's source key, the same on every attempt and copied by Dagster to a run's retries),
#: so the sensors can tell an upload that has a run from one that needs one and find the
#: upload of a failed run.
UPLOAD_KEY_TAG = f"{HIDDEN_TAG_PREFIX}rostering_upload_key"
#: Set by raw_upload on a run that read nothing (the LEA was still writing): the sensor asks
#: for the upload again once its listing is complete.
UNREAD_TAG = "rostering/upload_unread"
#: The process a run executes in when `rostering sync` runs it in-process: "<host>:<pid>:<start>".
PROCESS_TAG = f"{HIDDEN_TAG_PREFIX}rostering_process"
#: Set on runs the opt-in forkserver launcher started (the value: the run process's id).
FORKED_TAG = f"{HIDDEN_TAG_PREFIX}rostering_run_worker"
