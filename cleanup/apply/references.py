"""Delete leftover connection references and rename references, each guarded by fresh checks.

A delete happens only if every rewire it depends on succeeded, the reference is exactly the
version the plan saw (ETag, ``modifiedon`` and content hash), it is unmanaged and unprotected,
no flow uses it now (a fresh read of every flow in the environment), and the platform's
``RetrieveDependenciesForDelete`` names no dependent (canvas apps, bots...). The DELETE itself
carries ``If-Match``; a 0x8004f01f refusal ("still referenced") is a skip, never a crash.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cleanup import schemas
from cleanup.apply.context import (
    ApplyContext,
    EnvironmentContext,
    ObjectUnit,
    Step,
    StepFailed,
    describe_error,
)
from cleanup.apply.flows import same_time
from cleanup.apply.journal import backup_path, utc_now, write_backup
from cleanup.apply.outcomes import (
    ALREADY,
    DONE,
    DRIFT,
    FAILED,
    SKIPPED,
    SUCCEEDED,
    ActionOutcome,
)
from cleanup.clients.dataverse import REFERENCE_COLUMNS, DataverseClient
from cleanup.consolidate import DEFAULT_SOLUTION_ID, DEFAULT_SOLUTION_NAMES
from cleanup.errors import CleanupError
from cleanup.plan import (
    DeleteReference,
    ReferencePreconditions,
    RenameReference,
    reference_content_sha256,
)
from cleanup.snapshot.tables import reference_row

STILL_REFERENCED = "0x8004f01f"
MANAGED = "managed: fix it in the source environment"


def read_reference(dv: DataverseClient, reference_id: str) -> dict[str, Any] | None:
    """Read a connection reference by id (None if it does not exist)."""
    row, _etag = dv.get_row("connectionreferences", reference_id, REFERENCE_COLUMNS)
    return row


def etag_of(row: dict[str, Any] | None) -> str | None:
    """The ETag of a row (None for no row)."""
    return row.get("@odata.etag") if row else None


def content_sha256(environment_id: str, row: dict[str, Any]) -> str:
    """The plan's content hash of a reference, recomputed from an API row exactly as planned."""
    frame = schemas.frame_from_rows([reference_row(environment_id, row)], schemas.REFERENCES)
    record = frame.astype(object).where(frame.notna(), None).to_dict("records")[0]
    return reference_content_sha256(record)


def reference_drift(
    pre: ReferencePreconditions, environment_id: str, row: dict[str, Any]
) -> str | None:
    """Say how a reference differs from what the plan saw (None: it does not)."""
    etag = etag_of(row)
    if pre.etag and etag != pre.etag:
        return f"the reference changed since the plan (ETag {pre.etag} is now {etag})"
    if pre.modified_on and not same_time(pre.modified_on, row.get("modifiedon")):
        return f"the reference was modified at {row.get('modifiedon')}, after the plan"
    if content_sha256(environment_id, row) != pre.content_sha256:
        return "the reference's content changed since the plan"
    return None


class ReferenceJob:
    """Shared parts of the delete and rename handlers."""

    def __init__(
        self, ctx: ApplyContext, env: EnvironmentContext, action: DeleteReference | RenameReference
    ) -> None:
        self.ctx, self.env, self.action = ctx, env, action
        self.unit: ObjectUnit[dict[str, Any]] = ObjectUnit(
            ctx,
            env,
            "reference",
            action.reference_id,
            [action.action_id],
            reread=lambda: read_reference(env.dv, action.reference_id),
            etag_of=etag_of,
        )

    def outcome(self, status: str, reason: str) -> list[ActionOutcome]:
        """The outcome of this job's action."""
        return [self.unit.outcome(self.action, status, reason)]

    def guard(self, current: dict[str, Any]) -> tuple[str, str] | None:
        """Drift, managed and protected checks on the reference as read now."""
        if self.unit.trail.backup is None:
            env_id = self.env.environment_id
            problem = reference_drift(self.action.preconditions, env_id, current)
            if problem:
                return DRIFT, problem
        elif not self.unit.trusted(current):
            return DRIFT, "the reference changed since this apply read it"
        if current.get("ismanaged") is not False:
            return SKIPPED, MANAGED
        name = current.get("connectionreferencelogicalname")
        if self.ctx.limits.is_protected(name):
            return SKIPPED, f"'{name}' is protected by apply.protected_patterns"
        return None

    def backup(self, current: dict[str, Any], solutions: list[dict[str, Any]]) -> None:
        """Write the before-image (the whole row and its solutions), then journal it."""
        env_id = self.env.environment_id
        path = backup_path(self.ctx.folder, "reference", env_id, self.action.reference_id)
        data = {
            "kind": "reference",
            "environment_id": env_id,
            "reference_id": self.action.reference_id,
            "read_at": utc_now(),
            "etag": etag_of(current),
            "row": current,
            "solutions": solutions,
        }
        write_backup(path, data)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.unit.journal(
            "backup",
            step="reference",
            path=str(path.relative_to(self.ctx.folder)),
            sha256=digest,
            etag=etag_of(current),
            logical_name=current.get("connectionreferencelogicalname"),
        )

    def solutions(self) -> list[dict[str, Any]]:
        """The non-default solutions holding the reference (for restore); raises if unknown."""
        known, error = self.env.solutions()
        if known is None:
            raise CleanupError(f"its solutions could not be read ({error})")
        rows = self.env.dv.rows(
            "solutioncomponents",
            "_solutionid_value,objectid,componenttype",
            f"objectid eq {self.action.reference_id}",
        )
        out = []
        for solution_id in dict.fromkeys(
            str(r.get("_solutionid_value") or "").lower() for r in rows
        ):
            solution = known.get(solution_id) or {}
            unique = str(solution.get("uniquename") or "")
            if solution_id in ("", DEFAULT_SOLUTION_ID) or unique.lower() in DEFAULT_SOLUTION_NAMES:
                continue
            out.append(
                {
                    "solution_id": solution_id,
                    "unique_name": unique,
                    "is_managed": solution.get("ismanaged"),
                }
            )
        return out


# ---------------------------------------------------------------------------------------------
# Delete


def apply_delete_reference(
    ctx: ApplyContext, env: EnvironmentContext, actions: list[DeleteReference]
) -> list[ActionOutcome]:
    """Delete a leftover reference once its rewires succeeded and nothing depends on it."""
    return DeleteJob(ctx, env, actions[0]).run()


class DeleteJob(ReferenceJob):
    """Apply one ``DeleteReference``."""

    action: DeleteReference

    def run(self) -> list[ActionOutcome]:
        """Check everything again, back up, delete with If-Match, confirm it is gone."""
        blocked = self._blocked_by()
        if blocked:
            return self.outcome(SKIPPED, blocked)
        current = self.unit.reread()
        self.unit.settle_pending(current, lambda row: row is None)
        if current is None:
            if self.unit.trail.did("delete"):
                return self.outcome(DONE, "deleted (confirmed by re-reading)")
            return self.outcome(ALREADY, "the reference no longer exists")
        verdict = self.guard(current) or self._in_use(current)
        if verdict is not None:
            return self.outcome(*verdict)
        if self.unit.trail.backup is None:
            try:
                self.backup(current, self.solutions())
            except CleanupError as exc:
                why = f"no complete backup, so it could not be restored: {describe_error(exc)}"
                return self.outcome(SKIPPED, why)
        return self._delete(current)

    def _blocked_by(self) -> str | None:
        for action_id in self.action.depends_on:
            status = self.ctx.status_of(action_id)
            if status not in SUCCEEDED:
                return (
                    f"the rewire {action_id} it depends on did not succeed ({status or 'not run'})"
                )
        return None

    def _in_use(self, current: dict[str, Any]) -> tuple[str, str] | None:
        name = str(current.get("connectionreferencelogicalname") or "")
        if self.ctx.limits.rescan_flows_before_delete:
            users, error = self.env.usage()
            if users is None:
                return SKIPPED, f"flows could not all be read, so usage is unknown ({error})"
            found = users.get(name.casefold())
            if found:
                flows = ", ".join(f"'{f}'" for f in sorted(set(found))[:5])
                return SKIPPED, f"still used by {len(set(found))} flow(s): {flows}"
        return self._dependents()

    def _dependents(self) -> tuple[str, str] | None:
        component_type, error = self.env.reference_component_type()
        if component_type is None:
            return SKIPPED, f"dependencies could not be checked ({error})"
        try:
            rows = self.env.dv.dependencies_for_delete(self.action.reference_id, component_type)
        except CleanupError as exc:
            return SKIPPED, f"dependencies could not be checked ({describe_error(exc)})"
        if not rows:
            return None
        kinds = sorted({str(r.get("dependentcomponenttype")) for r in rows if isinstance(r, dict)})
        return SKIPPED, (
            f"the platform reports {len(rows)} dependent component(s) (component types "
            f"{', '.join(kinds)}): it is in use"
        )

    def _delete(self, current: dict[str, Any]) -> list[ActionOutcome]:
        dv, ref_id = self.env.dv, self.action.reference_id

        def send(if_match: str) -> dict[str, Any] | None:
            dv.delete("connectionreferences", ref_id, if_match)
            return None

        details = {
            "expect": "absent",
            "before": {
                "logical_name": current.get("connectionreferencelogicalname"),
                "display_name": current.get("connectionreferencedisplayname"),
                "connection_id": current.get("connectionid"),
            },
        }
        step = Step("delete", send, lambda row: row is None, details, reread_after=False)
        try:
            self.unit.perform(step, etag_of(current) or "")
        except StepFailed as exc:
            return self.outcome(*self._refusal(exc))
        seen = self.unit.wait_until(lambda row: row is None)
        if seen is not None:
            self.unit.journal("verify-failed", etag=etag_of(seen))
            return self.outcome(FAILED, "the reference is still there after the delete")
        self.unit.journal("verified", etag=None)
        return self.outcome(DONE, f"deleted ({self.action.reason})")

    @staticmethod
    def _refusal(exc: StepFailed) -> tuple[str, str]:
        if exc.drift:
            return DRIFT, str(exc)
        if exc.error is not None and (exc.error.code or "").lower() == STILL_REFERENCED:
            return SKIPPED, f"the platform refused: still referenced ({describe_error(exc.error)})"
        return FAILED, str(exc)


# ---------------------------------------------------------------------------------------------
# Rename


def apply_rename_reference(
    ctx: ApplyContext, env: EnvironmentContext, actions: list[RenameReference]
) -> list[ActionOutcome]:
    """Change a reference's display name to the proposed compliant one."""
    return RenameJob(ctx, env, actions[0]).run()


class RenameJob(ReferenceJob):
    """Apply one ``RenameReference``."""

    action: RenameReference

    def run(self) -> list[ActionOutcome]:
        """Check, back up, PATCH the display name with If-Match, verify."""
        target = self.action.to_display_name
        current = self.unit.reread()
        self.unit.settle_pending(current, lambda row: _display(row) == target)
        if current is None:
            return self.outcome(SKIPPED, "the reference no longer exists")
        if _display(current) == target:
            return self.outcome(ALREADY, "the reference already has this name")
        verdict = self.guard(current)
        if verdict is not None:
            return self.outcome(*verdict)
        if self.unit.trail.backup is None:
            try:
                self.backup(current, self.solutions())
            except CleanupError as exc:
                return self.outcome(SKIPPED, f"no complete backup: {describe_error(exc)}")
        return self._rename(current, target)

    def _rename(self, current: dict[str, Any], target: str) -> list[ActionOutcome]:
        dv, ref_id = self.env.dv, self.action.reference_id
        body = {"connectionreferencedisplayname": target}

        def send(if_match: str) -> dict[str, Any] | None:
            return dv.patch(
                "connectionreferences", ref_id, body, if_match, select=REFERENCE_COLUMNS
            )

        details = {
            "expect": {"display_name": target},
            "before": {"display_name": _display(current)},
        }
        step = Step("rename", send, lambda row: _display(row) == target, details)
        try:
            self.unit.perform(step, etag_of(current) or "")
        except StepFailed as exc:
            return self.outcome(DRIFT if exc.drift else FAILED, str(exc))
        seen = self.unit.wait_until(lambda row: _display(row) == target)
        if _display(seen) != target:
            return self.outcome(FAILED, "the new name did not read back")
        self.unit.journal("verified", etag=etag_of(seen))
        return self.outcome(DONE, f"renamed to '{target}'")


def _display(row: dict[str, Any] | None) -> str | None:
    return row.get("connectionreferencedisplayname") if row else None
