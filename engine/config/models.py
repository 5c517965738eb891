"""Pydantic models of every resource kind: the single source of truth.

The JSON Schemas in ``schemas/`` are generated from these models
(``python -m engine.config.schemas --write``); a test fails when a committed
schema drifts from its model. Validation runs the generated schema with
``jsonschema`` (so every problem is located); the models then give the rest of
the engine typed, immutable objects.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from engine.config.names import (
    ENV_NAME_PATTERN,
    ID_PATTERN,
    NAME_MAX,
    NUMBER_MAX,
    SCHEME_PATTERN,
    TASK_NAME_MAX,
    TIME_PATTERN,
    USER_ID_PATTERN,
    VARIABLE_PATTERN,
)

Id = Annotated[str, Field(pattern=ID_PATTERN)]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN)]
Channel = Literal["push", "sms", "inbox-ewallet", "inbox-miniprogram"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WallTime = Annotated[str, Field(pattern=TIME_PATTERN, description="Wall-clock time HH:MM in the site's zone")]


def _exact(value: Any) -> Any:
    """An integer beyond ±2**53 is no float either (pydantic would round it into range)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -NUMBER_MAX <= value <= NUMBER_MAX:
        raise ValueError(f"a number of {len(str(abs(value)))} digits is too large")
    return value


# Numbers a person writes: finite (Strict refuses .inf/.nan) and within JSON's exact integer range.
Integer = Annotated[int, Field(ge=-NUMBER_MAX, le=NUMBER_MAX)]
Number = Annotated[float, Field(ge=-NUMBER_MAX, le=NUMBER_MAX), BeforeValidator(_exact)]


class Strict(BaseModel):
    """Unknown fields are errors, and loaded resources never change.

    Validation accepts a document only if its generated JSON Schema accepts it too (a
    property test holds them together): no field takes ``null`` (the schema offers none;
    an absent field is how YAML says "not set"), patterns use Python's ``re`` like
    jsonschema, and constraints the schema states with extra keywords (uniqueItems,
    exactly-one-of) are checked here as well.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None:
                    raise ValueError(f"{key!r} has no value")
        return data


def _unique(items: list) -> list:
    seen: list = []
    for item in items:
        if item in seen:
            raise ValueError(f"{item!r} is listed more than once")
        seen.append(item)
    return items


def UniqueList(item: Any, **constraints: Any) -> Any:
    """A list whose items are all different (``uniqueItems`` in the schema)."""
    return Annotated[list[item], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True}, **constraints)]


# --- platform -------------------------------------------------------------------------------


class Limits(Strict):
    max_per_user_per_day: int | None = Field(
        None, ge=1, le=1000, description="Messages a user may get per calendar day in the site's zone, across all tasks"
    )
    rate_per_second: dict[Channel, Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=dict, description="Sending pace per channel"
    )


class SmsSettings(Strict):
    """A site's SMS price and length limit: validate warns (sms-too-long) about an SMS that
    needs more than max_segments segments; price and currency give what an SMS costs."""

    price_per_segment: float | None = Field(
        None, ge=0, le=1_000_000, allow_inf_nan=False, description="What one SMS segment costs, in `currency`; the plan's SMS cost is segments x audience x this"
    )
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the price, e.g. USD")
    max_segments: int | None = Field(
        None, ge=1, le=10, description="Segments an SMS may need before validate (sms-too-long) and the plan (sms-segments) warn"
    )

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        regex_engine="python-re",
        json_schema_extra={"dependentRequired": {"price_per_segment": ["currency"], "currency": ["price_per_segment"]}},
    )

    @model_validator(mode="after")
    def _priced_in_a_currency(self) -> "SmsSettings":
        if (self.price_per_segment is None) != (self.currency is None):
            raise ValueError("price_per_segment and currency go together")
        return self


class Site(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    timezone: str = Field(min_length=1, description="IANA time zone, e.g. Asia/Manila")
    channels: UniqueList(Channel, min_length=1)
    mini_programs: list[Id] = Field(default_factory=list)
    testers: list[UserId] = Field(default_factory=list, description="Default pilot testers (user ids)")
    limits: Limits = Field(default_factory=Limits)
    deep_link_schemes: list[Annotated[str, Field(pattern=SCHEME_PATTERN)]] = Field(
        default_factory=list, description="URL schemes besides https that redirections may use, e.g. gcash"
    )
    sms: SmsSettings | None = Field(None, description="SMS price per segment and length limit (optional)")


class OutboxProvider(Strict):
    type: Literal["outbox"]
    path: str = Field(".campaigns/outbox", min_length=1, description="Folder of <channel>.jsonl files")


class GatewayProvider(Strict):
    type: Literal["gateway"]
    url: str = Field(
        pattern=r"^https?://",
        description="The wallet's message API, e.g. https://wallet.example/v2/platform/message/send",
    )
    token_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Environment variable holding a bearer token (sent as Authorization)"
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="Client-Id of signed requests (Alipay+ RSA256 signatures)"
    )
    private_key_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Environment variable holding the PEM RSA private key that signs requests"
    )
    key_version: int = Field(1, ge=0, le=1000000, description="keyVersion sent in the Signature header")
    wallet_public_key_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Environment variable holding the wallet's PEM public key; a reply whose signature does not verify is resent, never counted as sent",
    )
    timeout: float = Field(10.0, gt=0, le=600, description="Total seconds a request may take (connect to last byte) before it is retried")
    max_attempts: int = Field(5, ge=1, le=20, description="Tries per message before it is failed")
    batch_size: int = Field(20, ge=1, le=20, description="Messages per request (at most 20)")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once per executor process")

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        regex_engine="python-re",
        json_schema_extra={
            "anyOf": [{"required": ["token_env"]}, {"required": ["private_key_env"]}],
            "dependentRequired": {"client_id": ["private_key_env"], "private_key_env": ["client_id"]},
        },
    )

    @model_validator(mode="after")
    def _authenticated(self) -> "GatewayProvider":
        if self.token_env is None and self.private_key_env is None:
            raise ValueError("a gateway needs token_env (bearer token) or client_id with private_key_env (signed requests)")
        if (self.client_id is None) != (self.private_key_env is None):
            raise ValueError("client_id and private_key_env go together (signed requests need both)")
        return self


Provider = Annotated[Union[OutboxProvider, GatewayProvider], Field(discriminator="type")]


class Approval(Strict):
    forbid_self_merge: bool = Field(False, description="A pull request merged by its own author is no approval")


class Executor(Strict):
    poll_interval: float = Field(30.0, gt=0, le=86400, description="Seconds between polls of `campaigns run`")
    batch_size: int = Field(
        5000, ge=1, le=100000, description="Deliveries claimed (and recorded in the ledger) per batch"
    )
    workers: int = Field(
        1, ge=1, le=64, description="Executor processes `campaigns run` starts on this machine (one per core)"
    )


class Platform(Strict):
    state: str = Field("sqlite:///.campaigns/state.db", description="State database URL (sqlite:/// or postgresql://)")
    user_directory: str | None = Field(None, description="Database URL of the user directory; default: the state database")
    main_branch: str = Field("main", min_length=1)
    sites: dict[Id, Site] = Field(min_length=1)
    providers: dict[Literal["default", "push", "sms", "inbox-ewallet", "inbox-miniprogram"], Provider] = Field(
        default_factory=lambda: {"default": OutboxProvider(type="outbox")},
        description="How each channel is delivered; `default` covers channels not named",
    )
    approval: Approval = Field(default_factory=Approval)
    executor: Executor = Field(default_factory=Executor)


# --- templates and creatives ----------------------------------------------------------------


class FieldSpec(Strict):
    required: bool = False
    max_length: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Most characters the rendered field may have; when absent, only the channel's own limit applies",
    )


class TemplateFields(Strict):
    title: FieldSpec | None = None
    content: FieldSpec | None = None
    redirection: FieldSpec | None = None


class Variable(Strict):
    example: str | Integer | Number | bool = Field(description="Value used in previews and pilot tests")
    description: str | None = None


class Template(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    channel: Channel
    status: Literal["approved", "under-review", "rejected"]
    fields: TemplateFields
    variables: dict[Annotated[str, Field(pattern=VARIABLE_PATTERN)], Variable] = Field(default_factory=dict)


class Creative(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    template: Id
    title: str | None = None
    content: str | None = None
    redirection: str | list[str] | None = Field(None, description="One URL, or a list of URLs")
    description: str | None = None


# --- audiences ------------------------------------------------------------------------------

Scalar = Union[str, Integer, Number, bool]


class Condition(Strict):
    attr: Annotated[str, Field(pattern=VARIABLE_PATTERN)]
    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(None, min_length=1)
    gt: Integer | Number | str | None = None
    gte: Integer | Number | str | None = None
    lt: Integer | Number | str | None = None
    lte: Integer | Number | str | None = None
    exists: bool | None = None

    model_config = ConfigDict(
        extra="forbid", frozen=True, regex_engine="python-re", json_schema_extra={"minProperties": 2, "maxProperties": 2}
    )

    @model_validator(mode="after")
    def _one_operator(self) -> "Condition":
        if len(self.model_fields_set - {"attr"}) != 1:
            raise ValueError("a condition is 'attr' plus exactly one operator")
        return self

    @property
    def operator(self) -> tuple[str, Any]:
        """``(name, operand)`` of the condition's single operator (``in`` for ``in_``)."""
        name = next(iter(self.model_fields_set - {"attr"}))
        return ("in" if name == "in_" else name), getattr(self, name)


class AllOf(Strict):
    all: list[Condition] = Field(min_length=1)


class Where(Strict):
    any: list[AllOf] | None = Field(None, min_length=1)
    all: list[Condition] | None = Field(None, min_length=1)

    model_config = ConfigDict(
        extra="forbid", frozen=True, regex_engine="python-re", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    @model_validator(mode="after")
    def _any_or_all(self) -> "Where":
        if len(self.model_fields_set) != 1:
            raise ValueError("write either 'any:' or 'all:'")
        return self

    @property
    def groups(self) -> list[list[Condition]]:
        """The rule as OR-of-AND groups."""
        return [group.all for group in self.any] if self.any is not None else [list(self.all or [])]


SOURCE_KINDS = ("users", "csv", "where", "include")


class Source(Strict):
    """Exactly one of ``users``, ``csv``, ``where`` or ``include`` (``exclude`` only with ``include``)."""

    users: list[UserId] | None = Field(None, min_length=1, description="Explicit user ids")
    csv: str | None = Field(None, min_length=1, description="CSV file with a user_id column, relative to the audience file")
    where: Where | None = Field(None, description="Rules over user-directory attributes")
    include: list[Id] | None = Field(None, min_length=1, description="Union of other audiences")
    exclude: list[Id] | None = Field(None, min_length=1, description="Audiences removed from the included ones")

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        regex_engine="python-re",
        json_schema_extra={
            "oneOf": [{"required": [kind]} for kind in SOURCE_KINDS],
            "dependentRequired": {"exclude": ["include"]},
        },
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "Source":
        present = [kind for kind in SOURCE_KINDS if kind in self.model_fields_set]
        if len(present) != 1:
            raise ValueError("a source is exactly one of users, csv, where, include")
        if "exclude" in self.model_fields_set and "include" not in self.model_fields_set:
            raise ValueError("'exclude' needs 'include'")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in SOURCE_KINDS if getattr(self, kind) is not None)


class Audience(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    site: Id
    mini_program: Id | None = None
    refresh: Literal["once", "auto"] = "auto"
    source: Source
    description: str | None = None


# --- campaigns and tasks --------------------------------------------------------------------


class Campaign(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str
    owner: str | None = None


class Window(Strict):
    start: WallTime
    finish: WallTime


class OneTime(Strict):
    type: Literal["one_time"]


class Daily(Strict):
    type: Literal["daily"]
    every: int = Field(1, ge=1, le=366)


class Weekly(Strict):
    type: Literal["weekly"]
    days: UniqueList(Weekday, min_length=1)
    every: int = Field(1, ge=1, le=53)


class Monthly(Strict):
    type: Literal["monthly"]
    day: Annotated[int, Field(ge=1, le=31)] | Literal["last"]


Recurrence = Annotated[Union[OneTime, Daily, Weekly, Monthly], Field(discriminator="type")]


class Schedule(Strict):
    start_date: dt.date
    finish_date: dt.date
    windows: list[Window] = Field(min_length=1)
    do_not_disturb: UniqueList(Weekday) = Field(default_factory=list)
    recurrence: Recurrence


class Task(Strict):
    name: str = Field(min_length=1, max_length=TASK_NAME_MAX)
    site: Id
    mini_program: Id | None = None
    channel: Channel
    schedule: Schedule
    audiences: list[Id] = Field(min_length=1)
    creatives: list[Id] = Field(min_length=1)
    testers: list[UserId] = Field(default_factory=list, description="Pilot testers; default: the site's testers")
    status: Literal["active", "paused"] = "active"
    description: str | None = None


MODELS: dict[str, type[Strict]] = {
    "platform": Platform,
    "template": Template,
    "audience": Audience,
    "creative": Creative,
    "campaign": Campaign,
    "task": Task,
}
