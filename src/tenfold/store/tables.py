"""ORM rows (SQLAlchemy 2 declarative) for everything tenfold persists.

Owns: table and column names, keys, indexes. Does not own: wire shapes (``tenfold.types``) or queries
(``tenfold.store.repo``). Every table has an integer ``seq`` primary key (insertion order, used for
newest-first listing and cursors) and, where the resource is public, a string ``id`` with its prefix.
Times are Unix seconds as floats; money is integer micro-dollars.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    # Admin-set monthly spend limit (UTC calendar month), integer micro-dollars; None = no limit.
    monthly_spend_limit_micro_usd: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    key_hint: Mapped[str] = mapped_column(String(32))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class File(Base):
    __tablename__ = "files"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(512))
    n_examples: Mapped[int] = mapped_column(Integer, default=0)
    data_format: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[float] = mapped_column(Float)
    # Added by migration 0004: fine-tune files, counted on upload with the server's default base model's
    # tokenizer (named in ``tokenizer``); None for other purposes.
    n_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_example_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokenizer: Mapped[str | None] = mapped_column(String(256), nullable=True)


class FineTuningJob(Base):
    __tablename__ = "fine_tuning_jobs"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(256))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    spec: Mapped[dict] = mapped_column(JSON)
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSON, nullable=True)  # the caller's key-value pairs
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    final_adapter_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    final_adapter_digest: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobEvent(Base):
    __tablename__ = "job_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_checkpoints_job_step"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(128))
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class AdapterDeployment(Base):
    """What a model name serves: a job's final adapter or one of its checkpoints (the name is the job id), or an
    imported adapter (the name is its ``adp-…`` id, ``job_id`` is None)."""

    __tablename__ = "adapter_deployments"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(256), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("fine_tuning_jobs.id"), nullable=True)  # None: imported
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None = final adapter
    base_model: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(128))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_org_seq", "organization_id", "seq"),
                      Index("ix_usage_org_created", "organization_id", "created_at"))
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    base_model: Mapped[str] = mapped_column(String(256))
    adapter_digest: Mapped[str | None] = mapped_column(String(128), nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(String(256), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost_micro_usd: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    # Added by migration 0003 (billing and batch).
    usage_type: Mapped[str] = mapped_column(String(64), default="TEXT_COMPLETION_INFERENCE_USAGE",
                                            server_default="TEXT_COMPLETION_INFERENCE_USAGE")
    deployment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    discount_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # batch discount applied
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added by migration 0006 (dedicated deployments): replica time, for ``usage_type`` "deployment".
    accelerator_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    accelerator_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class Batch(Base):
    """An OpenAI Batch: the input file's lines run at batch priority; results go to output/error files."""

    __tablename__ = "batches"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    api_key_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    output_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    errors: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSON, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    in_progress_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finalizing_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    failed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelling_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelled_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchLine(Base):
    """One input line of a batch and, once run, its output line: the per-line progress that survives restarts."""

    __tablename__ = "batch_lines"
    __table_args__ = (UniqueConstraint("batch_id", "line_no", name="uq_batch_lines_batch_line"),
                      Index("ix_batch_lines_batch_status", "batch_id", "status"))
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))  # pending | completed | failed
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the output/error file line


class Deployment(Base):
    """A dedicated deployment: desired state (base model, hardware, replica limits, scaling targets)."""

    __tablename__ = "deployments"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    base_model: Mapped[str] = mapped_column(String(256))
    hardware_profile: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32))
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    target_rps: Mapped[float] = mapped_column(Float)
    target_latency_p95_ms: Mapped[float] = mapped_column(Float)
    scale_down_window_s: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), index=True)  # CREATING READY UPDATING DELETING DELETED FAILED
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    secret: Mapped[str] = mapped_column(String(128))  # replicas accept only requests carrying it (never returned)
    desired_replicas: Mapped[int] = mapped_column(Integer, default=0)
    last_change_at: Mapped[float] = mapped_column(Float)  # when desired_replicas last changed
    last_decision: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    start_failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive replica starts that failed
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeploymentReplica(Base):
    """One engine process of a deployment, and the watermark up to which its time was billed."""

    __tablename__ = "deployment_replicas"
    __table_args__ = (Index("ix_deployment_replicas_dep_state", "deployment_id", "state"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"))
    state: Mapped[str] = mapped_column(String(16))  # STARTING READY STOPPING STOPPED FAILED
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(256), nullable=True)
    placement: Mapped[str | None] = mapped_column(String(256), nullable=True)  # local process, or Ray actor + node
    started_at: Mapped[float] = mapped_column(Float)
    ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # last healthy answer
    billed_until: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeploymentAdapter(Base):
    """What a job id serves on one dedicated deployment (its final adapter or one checkpoint)."""

    __tablename__ = "deployment_adapters"
    __table_args__ = (UniqueConstraint("deployment_id", "model", name="uq_deployment_adapters_dep_model"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    model: Mapped[str] = mapped_column(String(256))  # the job id (or the imported adapter's id)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("fine_tuning_jobs.id"), nullable=True)  # None: imported
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base_model: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(128))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Lease(Base):
    """A named lease one process holds for a while (the deployment controller: one per database)."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)


class ImportedAdapter(Base):
    """A PEFT LoRA adapter brought in from elsewhere (an uploaded archive or a Hub repository), validated
    against the base model it was imported for; deployable like a job's adapter under its ``adp-…`` id."""

    __tablename__ = "imported_adapters"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_imported_adapters_org_name"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)  # unique within the organization
    base_model: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(1024))  # "upload:<file name>" or "hf:<repo>@<revision>"
    path: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(128))
    rank: Mapped[int] = mapped_column(Integer)
    target_modules: Mapped[list] = mapped_column(JSON)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
