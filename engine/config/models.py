"""Pydantic models of every resource kind: the single source of truth.

The JSON Schemas in ``schemas/`` are generated from these models
(``python -m engine.config.schemas --write``); a test fails when a committed
schema drifts from its model. Validation checks a file with these models first,
in strict mode; only a file they refuse goes through the generated schema with
``jsonschema``, which locates every problem (the models accept nothing the
schema refuses: tests/config/test_schemas.py). The models then give
the rest of the engine typed, immutable objects.
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


def UniqueList(item: Any, **constraints: Any) -> Any:  # noqa: N802 - used where a type is written
    """A list whose items are all different (``uniqueItems`` in the schema)."""
    return Annotated[list[item], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True}, **constraints)]


# --- platform -------------------------------------------------------------------------------


class Limits(Strict):
    max_per_user_per_day: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Messages a user may get per calendar day in the site's zone, across all tasks; "
        "users over it are `capped` for that occurrence. No limit when absent",
        examples=[3],
    )
    rate_per_second: dict[Channel, Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=dict,
        description="Messages per second the executor sends on each channel of this site",
        examples=[{"push": 500, "sms": 20}],
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
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The site's name for people (at most 100 characters)",
        examples=["Philippines wallet"],
    )
    timezone: str = Field(
        min_length=1,
        description="IANA time zone, e.g. Asia/Manila: every date and window of this site's tasks is wall-clock time in it",
        examples=["Asia/Manila", "America/New_York"],
    )
    channels: UniqueList(Channel, min_length=1) = Field(
        description="Reach channels enabled on this site (push, sms, inbox-ewallet, inbox-miniprogram); "
        "a task may only use one of these (channel-mismatch)",
        examples=[["push", "sms", "inbox-ewallet", "inbox-miniprogram"]],
    )
    mini_programs: list[Id] = Field(
        default_factory=list,
        description="Ids of the site's mini programs, which tasks and audiences may name in `mini_program`",
        examples=[["shop", "rewards"]],
    )
    testers: list[UserId] = Field(
        default_factory=list,
        description="Default pilot testers (user ids): `campaigns test` sends to them when a task lists no "
        "`testers` and no --tester is given; they need not be in the user directory",
        examples=[["u-tester-1", "u-tester-2"]],
    )
    limits: Limits = Field(
        default_factory=Limits, description="Delivery limits: a daily cap per user and a sending pace per channel"
    )
    deep_link_schemes: list[Annotated[str, Field(pattern=SCHEME_PATTERN)]] = Field(
        default_factory=list, description="URL schemes besides https that redirections may use, e.g. gcash"
    )
    sms: SmsSettings | None = Field(None, description="SMS price per segment and length limit (optional)")


class OutboxProvider(Strict):
    type: Literal["outbox"] = Field(
        description="outbox: append each message as one JSON line to <path>/<channel>.jsonl (the default provider)"
    )
    path: str = Field(
        ".campaigns/outbox", min_length=1, description="Folder that receives one <channel>.jsonl file per channel"
    )


class GatewayProvider(Strict):
    type: Literal["gateway"] = Field(
        description="gateway: POST batches of messages to the wallet's message API (.../v2/platform/message/send)"
    )
    url: str = Field(
        pattern=r"^https?://",
        description="Endpoint receiving POSTed message batches: the wallet's message API",
        examples=["https://gateway.example.com/v2/platform/message/send"],
    )
    token_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable holding a bearer token, sent as Authorization (the token itself never goes in git)",
        examples=["GATEWAY_TOKEN"],
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="Client-Id of signed requests (Alipay+ RSA256 signatures)"
    )
    private_key_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable holding the PEM RSA private key that signs requests",
        examples=["GATEWAY_PRIVATE_KEY"],
    )
    key_version: int = Field(1, ge=0, le=1000000, description="keyVersion sent in the Signature header")
    wallet_public_key_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable holding the wallet's PEM public key; a reply whose signature does not verify is resent, never counted as sent",
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
    state: str = Field(
        "sqlite:///.campaigns/state.db",
        description="State database URL (sqlite:/// or postgresql://); --state and CAMPAIGNS_STATE override it",
        examples=["sqlite:///.campaigns/state.db", "postgresql://campaigns@db.internal/campaigns"],
    )
    user_directory: str | None = Field(
        None,
        description="Database URL of the user directory (what `campaigns users import` loads); default: the state database",
        examples=["postgresql://campaigns@crm.internal/directory"],
    )
    main_branch: str = Field(
        "main",
        min_length=1,
        description="Branch whose merged pull requests are the approval `campaigns apply` needs",
        examples=["main"],
    )
    sites: dict[Id, Site] = Field(
        min_length=1,
        description="Sites by key (an id such as `ph`), which tasks and audiences name in `site`",
    )
    providers: dict[Literal["default", "push", "sms", "inbox-ewallet", "inbox-miniprogram"], Provider] = Field(
        default_factory=lambda: {"default": OutboxProvider(type="outbox")},
        description="How each channel is delivered; `default` covers channels not named",
    )
    approval: Approval = Field(
        default_factory=Approval,
        description="Approval policy; the one in force is the one already applied to the state, never the one in "
        "the pull request being approved",
    )
    executor: Executor = Field(default_factory=Executor, description="Settings of the executor service, `campaigns run`")


# --- templates and creatives ----------------------------------------------------------------


class FieldSpec(Strict):
    required: bool = Field(
        False,
        description="Every creative of the template must fill this field (redirection is needed on push and both "
        "inbox channels whatever this says)",
    )
    max_length: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Most characters the rendered field may have; when absent, only the channel's own limit applies",
    )


class TemplateFields(Strict):
    title: FieldSpec | None = Field(
        None, description="The notification's title; a creative may only write a title when this is listed",
        examples=[{"required": True, "max_length": 50}],
    )
    content: FieldSpec | None = Field(
        None, description="The notification's text (for SMS, the whole message); a creative may only write it when listed",
        examples=[{"required": True, "max_length": 178}],
    )
    redirection: FieldSpec | None = Field(
        None,
        description="Where a tap leads (one URL or a list); channel limit 2,048 characters, 1,024 through a gateway",
        examples=[{"required": True, "max_length": 2048}],
    )


class Variable(Strict):
    example: str | Integer | Number | bool = Field(
        description="Value used in previews and pilot tests, and to check lengths in validate", examples=["Maria", 1250]
    )
    description: str | None = Field(None, description="What the variable holds, for people writing creatives")


class Template(Strict):
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The platform's template name (at most 100 characters)",
        examples=["Promotion push"],
    )
    channel: Channel = Field(
        description="The channel this template is for: push, sms, inbox-ewallet or inbox-miniprogram; a task may "
        "only use creatives whose template is for its channel"
    )
    status: Literal["approved", "under-review", "rejected"] = Field(
        description="The platform's review of the template: approved (tasks may run with it), under-review "
        "(waiting for the platform team) or rejected. A task whose creative uses a template that is not "
        "approved is blocked (template-not-approved)"
    )
    fields: TemplateFields = Field(
        description="Which of title, content and redirection creatives fill, whether each is required, and its "
        "max_length"
    )
    variables: dict[Annotated[str, Field(pattern=VARIABLE_PATTERN)], Variable] = Field(
        default_factory=dict,
        description="Personalisation variables a creative may print as {{ user.NAME }}, each with an example value; "
        "only these are visible when rendering (variable-unknown otherwise)",
        examples=[{"first_name": {"example": "Maria"}, "points": {"example": 1250}}],
    )


class Creative(Strict):
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The creative's name (at most 100 characters)",
        examples=["Flash sale A"],
    )
    template: Id = Field(
        description="Id of the template (templates/<id>.yaml) this creative fills: it sets the channel, the fields "
        "and the variables",
        examples=["push-promo"],
    )
    title: str | None = Field(
        None,
        description="Title text, a template rendered per user (Jinja syntax, sandboxed); quote it when it starts with {{",
        examples=["{{ user.first_name }}, 50% off today"],
    )
    content: str | None = Field(
        None,
        description="Message text, a template rendered per user (Jinja syntax, sandboxed); for SMS the whole message",
        examples=["You have {{ user.points | default(0) }} points to spend."],
    )
    redirection: str | list[str] | None = Field(
        None,
        description="One URL, or a list of URLs: https:// or a deep-link scheme the site allows, never http:, "
        "javascript: or data:",
        examples=["https://shop.example.com/flash-sale"],
    )
    description: str | None = Field(None, description="Notes for people; never sent")


# --- audiences ------------------------------------------------------------------------------

Scalar = Union[str, Integer, Number, bool]


_TYPED = (
    "a number (or text that is a numeral) compares with numeric values, other text with text values, "
    "case-sensitive; true/false are the text \"true\"/\"false\""
)


class Condition(Strict):
    """``attr`` and exactly one operator."""

    attr: Annotated[str, Field(pattern=VARIABLE_PATTERN)] = Field(
        description="The user-directory attribute tested (a column of the `users import` CSV), or user_id",
        examples=["city", "points", "user_id"],
    )
    eq: Scalar | None = Field(
        None, description=f"The attribute equals this value; {_TYPED}. Never matches a user without it",
        examples=["Manila", 1000],
    )
    ne: Scalar | None = Field(
        None, description="The attribute is not this value; also matches users without the attribute",
        examples=["Manila"],
    )
    in_: list[Scalar] | None = Field(
        None, alias="in", min_length=1,
        description="The attribute is one of these values; never matches a user without it",
        examples=[["Manila", "Cebu"]],
    )
    not_in: list[Scalar] | None = Field(
        None, min_length=1,
        description="The attribute is none of these values; also matches users without the attribute",
        examples=[["gold", "platinum"]],
    )
    gt: Integer | Number | str | None = Field(
        None, description=f"The attribute is greater than this value; {_TYPED}, text by code point. "
        "Never matches a user without it", examples=[1000],
    )
    gte: Integer | Number | str | None = Field(
        None, description="The attribute is greater than or equal to this value (compared as for gt)", examples=[1000]
    )
    lt: Integer | Number | str | None = Field(
        None, description="The attribute is less than this value (compared as for gt)", examples=[30]
    )
    lte: Integer | Number | str | None = Field(
        None, description="The attribute is less than or equal to this value (compared as for gt)", examples=[30]
    )
    exists: bool | None = Field(
        None, description="true: the user has the attribute (a non-empty cell); false: the user lacks it"
    )

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
    all: list[Condition] = Field(min_length=1, description="Conditions that must all hold (AND)")


class Where(Strict):
    any: list[AllOf] | None = Field(
        None, min_length=1,
        description="Groups of which at least one must hold (OR); each group is an `all:` list",
        examples=[[{"all": [{"attr": "city", "eq": "Manila"}]}, {"all": [{"attr": "points", "gte": 1000}]}]],
    )
    all: list[Condition] | None = Field(
        None, min_length=1,
        description="Conditions that must all hold (AND); each is `attr` plus one of eq, ne, in, not_in, gt, gte, "
        "lt, lte, exists",
        examples=[[{"attr": "city", "eq": "Manila"}, {"attr": "points", "gte": 1000}]],
    )

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

    users: list[UserId] | None = Field(
        None, min_length=1, description="Explicit user ids (also users not in the directory)",
        examples=[["u-1001", "u-1002"]],
    )
    csv: str | None = Field(
        None, min_length=1,
        description="CSV file with a user_id column (other columns are attributes), relative to the audience file "
        "and inside the repository",
        examples=["new-users-ph.csv"],
    )
    where: Where | None = Field(
        None,
        description="Rules over user-directory attributes: `any:` of `all:` groups, or one `all:` list of conditions",
    )
    include: list[Id] | None = Field(
        None, min_length=1, description="Union of other audiences (ids)", examples=[["new-users-ph", "high-points-ph"]]
    )
    exclude: list[Id] | None = Field(
        None, min_length=1, description="Audiences (ids) removed from the included ones; only with include",
        examples=[["opted-out-ph"]],
    )

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
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The audience's name (at most 100 characters)",
        examples=["New users (PH)"],
    )
    site: Id = Field(description="Key of the site in platform.yaml whose users this audience selects", examples=["ph"])
    mini_program: Id | None = Field(
        None, description="A mini program of the site (its `mini_programs`) this audience belongs to", examples=["shop"]
    )
    refresh: Literal["once", "auto"] = Field(
        "auto",
        description="once: membership is fixed when a task first delivers to it; auto: re-evaluated at every occurrence",
    )
    source: Source = Field(
        description="Who is in it: exactly one of users, csv, where, or include (with optional exclude)"
    )
    description: str | None = Field(None, description="Notes for people")


# --- campaigns and tasks --------------------------------------------------------------------


class Campaign(Strict):
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The campaign's name (at most 100 characters)",
        examples=["December flash sale"],
    )
    description: str = Field(description="What the campaign is for", examples=["Holiday promotions on the shop"])
    owner: str | None = Field(
        None, description="Who is responsible for the campaign (a person or team)", examples=["growth-team"]
    )


class Window(Strict):
    start: WallTime = Field(
        description="When delivery may start, HH:MM on the site's wall clock; a time in a DST gap moves to the first "
        "valid instant",
        examples=["09:00"],
    )
    finish: WallTime = Field(
        description="When delivery stops, HH:MM on the site's wall clock; more than 2 hours after start "
        "(09:00-11:00 is too short, 09:00-11:01 is fine)",
        examples=["11:30"],
    )


class OneTime(Strict):
    type: Literal["one_time"] = Field(
        description="one_time: one occurrence (key `once`) spanning every window of every allowed date; each user "
        "gets the notification once"
    )


class Daily(Strict):
    type: Literal["daily"] = Field(description="daily: an occurrence every `every` days from start_date")
    every: int = Field(
        1, ge=1, le=366,
        description="Days between occurrences, counted from start_date (not restarting each month); 2 = every other day",
        examples=[2],
    )


class Weekly(Strict):
    type: Literal["weekly"] = Field(description="weekly: on the given weekdays of every `every`-th week")
    days: UniqueList(Weekday, min_length=1) = Field(
        description="Weekdays to deliver on", examples=[["tuesday", "friday"]]
    )
    every: int = Field(
        1, ge=1, le=53, description="Every N-th week, counted from the week of start_date; 1 = every week",
        examples=[2],
    )


class Monthly(Strict):
    type: Literal["monthly"] = Field(description="monthly: on one day of each month")
    day: Annotated[int, Field(ge=1, le=31)] | Literal["last"] = Field(
        description="Day of the month, 1-31, or last; in a shorter month, its last day (31: Feb 28/29, Apr 30)",
        examples=[18, "last"],
    )


Recurrence = Annotated[Union[OneTime, Daily, Weekly, Monthly], Field(discriminator="type")]


class Schedule(Strict):
    start_date: dt.date = Field(description="First day of delivery, YYYY-MM-DD in the site's zone", examples=["2026-12-01"])
    finish_date: dt.date = Field(
        description="Last day of delivery (inclusive), not before start_date", examples=["2026-12-31"]
    )
    windows: list[Window] = Field(
        min_length=1,
        description="Daily delivery windows in the site's zone: each longer than 2 hours, each starting after the "
        "previous one finishes",
        examples=[[{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}]],
    )
    do_not_disturb: UniqueList(Weekday) = Field(
        default_factory=list,
        description="Weekdays with no delivery; an occurrence on one is skipped, never moved",
        examples=[["monday"]],
    )
    recurrence: Recurrence = Field(
        description="How often: one_time, daily (every N days), weekly (days, every N weeks) or monthly (day D or last)",
        examples=[{"type": "daily", "every": 2}, {"type": "weekly", "days": ["tuesday", "friday"]}],
    )


class Task(Strict):
    name: str = Field(
        min_length=1, max_length=TASK_NAME_MAX, description="The task's name, at most 64 characters (code points)",
        examples=["Flash sale push"],
    )
    site: Id = Field(
        description="Key of the site in platform.yaml: its time zone, channels and limits apply", examples=["ph"]
    )
    mini_program: Id | None = Field(
        None, description="A mini program of the site (its `mini_programs`) the task is for", examples=["shop"]
    )
    channel: Channel = Field(
        description="Reach channel: push, sms, inbox-ewallet or inbox-miniprogram; enabled on the site, and the "
        "channel of every creative's template"
    )
    schedule: Schedule = Field(
        description="When it delivers: dates, daily windows, do-not-disturb weekdays and recurrence, in the site's zone"
    )
    audiences: list[Id] = Field(
        min_length=1, description="Audience ids, one or more; members are de-duplicated", examples=[["new-users-ph"]]
    )
    creatives: list[Id] = Field(
        min_length=1,
        description="Creative ids, one or more; users are split evenly between them by a stable hash",
        examples=[["flash-a", "flash-b"]],
    )
    testers: list[UserId] = Field(
        default_factory=list,
        description="User ids `campaigns test` sends the pilot notification to; default: the site's testers "
        "(--tester overrides both)",
        examples=[["u-tester-1"]],
    )
    status: Literal["active", "paused"] = Field(
        "active",
        description="Desired state: active (runs once pilot-tested and approved) or paused (stops delivery; back "
        "to active resumes, with no new pilot test)",
    )
    description: str | None = Field(None, description="Notes for people")


MODELS: dict[str, type[Strict]] = {
    "platform": Platform,
    "template": Template,
    "audience": Audience,
    "creative": Creative,
    "campaign": Campaign,
    "task": Task,
}
