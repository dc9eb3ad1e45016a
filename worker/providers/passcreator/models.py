"""Typed Passcreator requests and responses, lenient about what the API sends.

Responses accept unknown fields (kept in `model_extra` under their wire names), numbers sent
as strings, booleans sent as "true"/"false", and `errors` given as objects or strings.
Python names are snake_case; the wire names are aliases.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from worker.providers.port import ProviderPass


def _to_str(value: Any) -> Any:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _to_bool(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False if value is None else bool(value)


def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return value


OptStr = Annotated[str | None, BeforeValidator(_to_str)]
LenientBool = Annotated[bool, BeforeValidator(_to_bool)]
OptBool = Annotated[bool | None, BeforeValidator(lambda v: None if v is None else _to_bool(v))]
OptInt = Annotated[int | None, BeforeValidator(_to_int)]


def wire(*names: str) -> Any:
    """A field read from any of these wire names (or its Python name)."""
    return Field(default=None, validation_alias=AliasChoices(*names))


class Wire(BaseModel):
    """Base of every response model: tolerant of unknown fields, immutable."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Request(BaseModel):
    """Base of request bodies: built by name, sent by wire name, Nones left out."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


# -- envelopes -----------------------------------------------------------------------------


class ApiMessage(Wire):
    """One item of `errors`: {property, message}, or a plain string read as the message."""

    property: OptStr = None
    message: str = ""

    def text(self) -> str:
        return f"{self.property}: {self.message}" if self.property else self.message


class Envelope(Wire):
    """The v2/v3 envelope: {success, description, errors, data, statusCode}."""

    success: LenientBool = True
    description: OptStr = None
    errors: list[ApiMessage] = []
    data: Any = None
    status_code: OptInt = wire("statusCode", "status_code")

    @field_validator("errors", mode="before")
    @classmethod
    def _errors(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else []
        return [{"message": item} if isinstance(item, str) else item for item in items]

    def messages(self) -> list[str]:
        texts = [m.text().strip() for m in self.errors]
        texts = [t for t in texts if t]
        if not texts and self.description and self.description.strip():
            return [self.description.strip()]
        return texts


# -- passes --------------------------------------------------------------------------------


def _properties(value: Any) -> Any:
    """Additional properties as name -> value, from a mapping or a list of {name|id, value}."""
    if isinstance(value, dict):
        return dict(value)
    result: dict[str, Any] = {}
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and "value" in item:
            key = item.get("name") or item.get("id")
            if key:
                result[str(key)] = item["value"]
    return result


class PassWriteResult(ProviderPass):
    """The answer to create or update (§3.5); a ProviderPass with what else came back."""

    model_config = ConfigDict(frozen=True, extra="allow")

    barcode_value: str | None = None
    serial_number: str | None = None
    auto_generated_id: str | None = None


class PassDetails(ProviderPass):
    """The v1 pass object (§3.6) from GET /api/pass/{id}; a ProviderPass with the rest."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    pass_id: str = Field(validation_alias=AliasChoices("identifier", "pass_id"))
    user_provided_id: OptStr = wire("userProvidedId", "user_provided_id")
    template_id: OptStr = wire("passTemplateGuid", "template_id")
    voided: LenientBool = False
    fields: Annotated[dict[str, Any], BeforeValidator(_properties)] = Field(
        default={}, validation_alias=AliasChoices("additionalProperties", "fields")
    )
    download_page: OptStr = wire("linkToPassPage", "downloadPage", "download_page")
    iphone_uri: OptStr = wire("iPhoneUri", "iphone_uri")
    android_uri: OptStr = wire("androidUri", "AndroidUri", "android_uri")
    redeemed: LenientBool = False
    barcode_value: OptStr = wire("barcodeValue", "barcode_value")
    generated_id: OptStr = wire("generatedId", "generated_id")
    search_string: OptStr = wire("searchString", "search_string")
    template_name: OptStr = wire("passTemplateName", "template_name")
    created_on: OptStr = wire("createdOn", "created_on")
    modified_on: OptStr = wire("modifiedOn", "modified_on")
    expiration_date: OptStr = wire("expirationDate", "expiration_date")
    uri: OptStr = None
    field_mapping: dict[str, str] = Field(
        default={}, validation_alias=AliasChoices("fieldMapping", "field_mapping")
    )

    @field_validator("fields", "field_mapping", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class PassRow(Wire):
    """One row of the v3 list (§2.2, §3.6); additional properties stay in `properties`."""

    pass_id: str = Field(validation_alias=AliasChoices("identifier", "pass_id"))
    user_provided_id: OptStr = wire("userProvidedId", "user_provided_id")
    template_id: OptStr = wire("passTemplateGuid", "templateId", "template_id")
    voided: OptBool = None
    barcode_value: OptStr = wire("barcodeValue", "barcode_value")
    created_on: OptStr = wire("createdOn", "created_on")
    modified_on: OptStr = wire("modifiedOn", "modified_on")
    download_page: OptStr = wire("downloadPage", "linkToPassPage", "download_page")
    iphone_uri: OptStr = wire("iPhoneUri", "iphone_uri")
    android_uri: OptStr = wire("androidUri", "AndroidUri", "android_uri")
    registrations: OptInt = wire("noOfRegistrations", "registrations")
    active_devices: OptInt = wire("numberOfActive", "active_devices")
    active_apple: OptInt = wire("noOfActiveRegistrationsAppleWallet", "active_apple")
    active_google: OptInt = wire("noOfActiveRegistrationsGoogleWallet", "active_google")
    first_downloaded_at: OptStr = wire("firstDownloadedAt", "first_downloaded_at")

    @property
    def properties(self) -> dict[str, Any]:
        """The fields this model does not name: additional properties keyed by name."""
        return dict(self.model_extra or {})


class PassPage(BaseModel):
    """One page of a v3 list: its rows, the total the API reports, and the next link."""

    model_config = ConfigDict(frozen=True)

    rows: list[PassRow]
    total: int | None = None
    next_url: str | None = None


class PassExistence(BaseModel):
    """Whether a pass exists for an identifier, and which one."""

    model_config = ConfigDict(frozen=True)

    exists: bool
    identifier: str
    by: Literal["user_provided_id", "pass_id", "barcode"]
    pass_id: str | None = None
    user_provided_id: str | None = None
    voided: bool | None = None


class PassCreate(Request):
    """The `data` of POST /api/v3/pass (§3.4); extra keys are additional properties."""

    template_id: str = Field(alias="templateId", min_length=1)
    user_provided_id: str | None = Field(default=None, alias="userProvidedId")
    enforce_unique_user_provided_id: bool | None = Field(
        default=None, alias="enforceUniqueUserProvidedId"
    )
    barcode_value: str | None = Field(default=None, alias="barcodeValue")
    grouping_identifier: str | None = Field(default=None, alias="groupingIdentifier")


# -- templates -----------------------------------------------------------------------------

TemplateType = Literal[
    "coupon", "storeCard", "eventTicketBackground", "eventTicket", "generic", "boardingPass"
]


class TemplateDetails(Wire):
    """A template as described by v2 describe or the deprecated v1 GET (shapes partly U)."""

    template_id: str = Field(
        validation_alias=AliasChoices("identifier", "uniqueIdentifier", "id", "template_id")
    )
    name: OptStr = None
    description: OptStr = None
    type: OptStr = None
    organization_name: OptStr = wire("organizationName", "organization_name")
    number_of_created_passes: OptInt = wire(
        "numberOfCreatedPasses", "noOfCreatedPasses", "number_of_created_passes"
    )
    number_of_active_passes: OptInt = wire("noOfActivePasses", "number_of_active_passes")
    create_pass_url: OptStr = wire("createPassUrl", "create_pass_url")
    dynamic_fields: dict[str, Any] = Field(
        default={}, validation_alias=AliasChoices("dynamicFields", "dynamic_fields")
    )

    @property
    def additional_properties(self) -> dict[str, str]:
        """Additional-property name -> id, from dynamicFields (the v1 describe shape)."""
        found = self.dynamic_fields.get("additionalProperties")
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


class TemplateCreate(Request):
    """Body of POST /api/v2/pass-template (§5); the JSON Schema has more keys (extra)."""

    name: str = Field(min_length=1)
    type: TemplateType = "generic"
    description: str | None = None
    organization_name: str | None = Field(default=None, alias="organizationName")


class TemplateWriteResult(Wire):
    """Answer to a template create/update/publish; its shape is unconfirmed (U)."""

    template_id: OptStr = wire("identifier", "uniqueIdentifier", "id", "templateId", "template_id")


# -- webhooks, scans, statistics -----------------------------------------------------------


class WebhookSubscribe(Request):
    """Body of POST /api/hook/subscribe[/{templateId}] (§6)."""

    target_url: str | None = None
    event: str = Field(min_length=1)
    subscription_url: str | None = None
    retry_enabled: bool | None = Field(default=None, alias="retryEnabled")
    sign_payload: bool | None = Field(default=None, alias="signPayload")
    pull_mode: bool | None = Field(default=None, alias="pullMode")


class WebhookSubscription(Wire):
    """A stored subscription, from subscribe (201) or GET /api/hook/list."""

    subscription_id: OptStr = wire("id", "identifier", "subscriptionId", "subscription_id")
    target_url: OptStr = wire("target_url", "targetUrl")
    event: OptStr = None
    template_id: OptStr = wire("templateIdentifier", "passTemplate", "templateId", "template_id")
    access_token: SecretStr | None = wire("accessToken", "access_token")


class AppScan(Request):
    """Body of POST /api/appscan (§7): records a scan; `set_voided` redeems the pass."""

    app_configuration_id: str = Field(alias="appConfigurationId", min_length=1)
    pass_id: str | None = Field(default=None, alias="passId")
    scan_status: Literal[0, 1, 2, 3] = Field(default=2, alias="scanStatus")
    scanned_barcode_value: str | None = Field(default=None, alias="scannedBarcodeValue")
    device_name: str | None = Field(default=None, alias="deviceName")
    created_on: str | None = Field(default=None, alias="createdOn")
    set_voided: bool | None = Field(default=None, alias="setVoided")
    additional_properties: dict[str, Any] | None = Field(default=None, alias="additionalProperties")


class AppScanResult(Wire):
    app_scan_id: str = Field(validation_alias=AliasChoices("appScanId", "app_scan_id"))


class TimelinePoint(Wire):
    date: str
    passes: OptInt = wire("noOfPasses", "passes")


def _timeline(*names: str) -> Any:
    return Field(default_factory=list, validation_alias=AliasChoices(*names))


class TemplateStatistics(Wire):
    """GET /api/pass/statistics/{templateId} (§8); counts arrive as strings."""

    active_registrations: list[TimelinePoint] = _timeline(
        "activeRegistrationsTimeline", "active_registrations"
    )
    inactive_registrations: list[TimelinePoint] = _timeline(
        "inactiveRegistrationsTimeline", "inactive_registrations"
    )
    created_passes: list[TimelinePoint] = _timeline("createdPassesTimeline", "created_passes")
    updated_passes: list[TimelinePoint] = _timeline("updatedPassesTimeline", "updated_passes")
    passes_per_operating_system: dict[str, OptInt] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("passesPerOperatingSystem", "passes_per_operating_system"),
    )
