"""What an operator does with an upload the safeguard held: release it (apply it with its
drops) or reject it (change nothing). Each is one run of `sync_upload` for the LEA's
partition that replays the held upload with the operator's word; the Launchpad link opens
that run ready to launch (partition and config filled in)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

JOB = "sync_upload"
#: The code location's repository address as the UI writes it in paths.
REPO_ADDRESS = "__repository__@rostering_pipeline"
WORDS = ("release", "reject")


def run_config(upload_id: str, word: str) -> dict:
    return {
        "ops": {
            "raw_upload": {"config": {"replay_upload_id": upload_id}},
            "roster_diff": {"config": {"held_upload": word}},
        }
    }


def config_yaml(upload_id: str, word: str) -> str:
    return (
        "ops:\n"
        "  raw_upload:\n"
        "    config:\n"
        f'      replay_upload_id: "{upload_id}"\n'
        "  roster_diff:\n"
        "    config:\n"
        f"      held_upload: {word}\n"
    )


def launchpad_url(lea_id: str, upload_id: str, word: str) -> str:
    """A path on the Dagster UI: the sync_upload Launchpad with the LEA's partition and the
    release/reject config filled in; the operator reads it and clicks Launch Run."""
    query = urlencode(
        {
            "config": config_yaml(upload_id, word),
            "tags[0][key]": "dagster/partition",
            "tags[0][value]": lea_id,
        }
    )
    return f"/locations/{REPO_ADDRESS}/jobs/{JOB}/playground/setup?{query}"


@dataclass(frozen=True)
class HeldUpload:
    lea_id: str
    upload_id: str
    reason: str

    def action(self) -> str:
        """The decision in one paragraph: what is held, why, and the two ways on."""
        return (
            f"Upload {self.upload_id} of LEA {self.lea_id} is held for review, not applied: "
            f"{self.reason}. Check with the district, then either release it (apply it with "
            f"its drops) or reject it (change nothing): launch {JOB} for partition "
            f"{self.lea_id} with held_upload: release or reject and replay_upload_id: "
            f"{self.upload_id} (the release/reject links on the check open that run ready "
            "to launch)."
        )

    def action_markdown(self) -> str:
        links = " · ".join(
            f"[**{w.capitalize()}** upload {self.upload_id}]"
            f"({launchpad_url(self.lea_id, self.upload_id, w)})"
            for w in WORDS
        )
        return (
            f"**Held for review, not applied**: {self.reason}.\n\n"
            "Check with the district, then open one of these and click *Launch Run*: "
            f"{links}.\n\n"
            "*Release* applies the upload with its drops; *reject* records it as rejected and "
            f"changes nothing. Either is a run of `{JOB}` for partition `{self.lea_id}` with:\n\n"
            "```yaml\n" + config_yaml(self.upload_id, "release  # or: reject") + "```"
        )

    def as_json(self) -> str:
        return json.dumps({"lea_id": self.lea_id, "upload_id": self.upload_id})
