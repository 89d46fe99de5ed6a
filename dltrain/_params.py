"""The base of every parameter model: strict keys, with a "did you mean" for typos.

Users of tools that silently ignore misspelled keys (torchtune #540, Lightning #12303)
lose hours to it. Here an unknown key is an error naming the valid keys and the
closest one.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    WrapSerializer,
    WrapValidator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError

from ._registry import Registry, did_you_mean


class Params(BaseModel):
    """Strict parameters: unknown keys are errors with a suggestion."""

    # nan and inf are never a sensible setting (`lr: .inf` would train on, to a NaN loss)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _suggest_unknown_keys(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise _with_suggestions(exc, cls) from None


def _valid_keys(model: type[BaseModel]) -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(name)
        if isinstance(info.alias, str) and info.alias != name:
            keys.append(info.alias)
    return keys


def _with_suggestions(exc: ValidationError, model: type[BaseModel]) -> ValidationError:
    """Rewrite this model's own `extra_forbidden` errors into 'unknown key' errors."""
    valid = [k for k in _valid_keys(model) if k not in ("type", "source")]
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        kind, message = err["type"], err["msg"]
        if kind == "extra_forbidden" and len(err["loc"]) == 1:
            key = str(err["loc"][0])
            kind = "unknown_key"
            message = f"unknown key '{key}'.{did_you_mean(key, valid)} Valid keys: {', '.join(valid) or '(none)'}."
        escaped = message.replace("{", "{{").replace("}", "}}")
        details.append(InitErrorDetails(type=PydanticCustomError(kind, escaped), loc=err["loc"], input=err["input"]))
    return ValidationError.from_exception_data(exc.title, details)


def tagged_union(
    registry: Registry[Any],
    tag: str = "type",
    allow_string: bool = False,
    custom: Callable[[str], type[BaseModel] | None] | None = None,
) -> Any:
    """An annotation accepting any registered params model, chosen by its `tag` key.

    The tag is checked against the registry first, so an unknown name gets the list of
    valid names and a "did you mean" instead of pydantic's generic union error. With
    `allow_string`, a bare name (`optimizer: adam`) means `{type: adam}`.
    """
    models = tuple(e.params for e in registry if e.params is not None)

    def check_tag(value: Any) -> Any:
        if allow_string and isinstance(value, str):
            value = {tag: value}
        if not isinstance(value, dict):
            return value
        if tag not in value:
            raise PydanticCustomError(
                "missing_tag",
                f"missing key '{tag}': name the {registry.kind} (one of {', '.join(registry.names())}).",
            )
        canonical = registry.canonical(str(value[tag]))
        if canonical is None:
            raise PydanticCustomError("unknown_name", registry.unknown_message(value[tag]))
        return {**value, tag: canonical}

    union = models[0] if len(models) == 1 else Union[models]
    extra: tuple[Any, ...] = (_NameShorthand(registry.names()),) if allow_string else ()
    annotated: Any
    if len(models) == 1:
        annotated = Annotated[union, BeforeValidator(check_tag), *extra]
    else:
        annotated = Annotated[union, Field(discriminator=tag), BeforeValidator(check_tag), *extra]
    if custom is None:
        return annotated

    def check_custom(value: Any, handler: Callable[[Any], Any]) -> Any:
        """A name that is no registered one may be an import path (`pkg.mod:Class`): validate it by its own model."""
        name = value if isinstance(value, str) and allow_string else value.get(tag) if isinstance(value, dict) else None
        if isinstance(name, str) and registry.canonical(name) is None:
            model = custom(name)
            if model is not None:
                return model.model_validate({tag: name} if isinstance(value, str) else value)
        return handler(value)

    def dump_custom(value: Any, handler: Callable[[Any], Any], info: Any) -> Any:
        """A custom name's params are no member of the union: dump them by their own model."""
        if isinstance(value, models):
            return handler(value)
        return value.model_dump(mode=info.mode, by_alias=info.by_alias)

    return Annotated[
        annotated, WrapValidator(check_custom), WrapSerializer(dump_custom), _ImportPathForm(tag, allow_string)
    ]


class _NameShorthand:
    """Adds the bare-name form (`optimizer: adam`) to the JSON Schema, which otherwise shows only mappings.

    Without it, editors and `jsonschema` reject every config that uses the shorthand,
    including the bundled presets and the schema's own defaults.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "enum": self.names}, handler(core_schema)]}


IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"  # package.module:Name


class _ImportPathForm:
    """Adds your own class by import path (`type: "my_package.blocks:ResBlock"`) to the JSON Schema.

    Its keys come from the class's constructor, which the schema cannot know: any keys are allowed there.
    """

    def __init__(self, tag: str, allow_string: bool) -> None:
        self.tag = tag
        self.allow_string = allow_string

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        by_path: dict[str, Any] = {
            "type": "object",
            "properties": {
                self.tag: {"type": "string", "pattern": IMPORT_PATH, "description": "'package.module:Class'"}
            },
            "required": [self.tag],
            "description": "your own class by import path, 'package.module:Class'; its constructor's keyword "
            "arguments are its keys",
        }
        forms = [handler(core_schema), by_path]
        if self.allow_string:
            forms.append({"type": "string", "pattern": IMPORT_PATH})
        return {"anyOf": forms}
