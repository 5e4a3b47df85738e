"""What an automation is made of and how it is checked: triggers, conditions, steps, run modes, templates, YAML/TOML text.

An automation is plain data (a dict), the same whether it comes from the API,
the dashboard's editor or a file in the hub's config dir. ``validate`` checks
it against the built-in shapes and against the trigger and action kinds the
hub halves registered, and says where a bad field is (``steps[2].with.node``)
and what is allowed there.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import voluptuous as vol

from roost.core.config import parse_duration
from roost.core.integration import humanize_invalid

MODES = ("single", "restart", "queued", "parallel")
DEFAULT_MAX_RUNS = 10
MAX_STEPS = 200
MAX_NESTING = 8
MAX_APPROVAL_SECONDS = 7 * 86400
DEFAULT_APPROVAL_SECONDS = 3600.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
AUTOMATION_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VARIABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# Step keys the interpreter itself runs; every other step is {"action": <registered kind>, "with": {...}}.
CONTROL_STEPS = ("delay", "wait_for_approval", "wait_for_trigger", "choose", "if", "stop", "variables")
CONDITION_KEYS = ("and", "or", "not", "node_online", "labels", "metric", "time", "template", "not_in_maintenance", "not_silenced")
BUILTIN_DOMAIN = "automation"


class AutomationInvalid(ValueError):
    """An automation that cannot be used as written: ``errors`` are ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))

    def as_list(self) -> list[dict[str, str]]:
        return [{"path": path, "message": message} for path, message in self.errors]


def kind_name(kind: Any) -> str:
    """``"cron"`` is short for the built-in ``"automation.cron"``; dotted names are an integration's own."""
    if isinstance(kind, str) and kind and "." not in kind:
        return f"{BUILTIN_DOMAIN}.{kind}"
    return kind if isinstance(kind, str) else ""


# ------------------------------------------------------------------ templates

_ENVS: dict[bool, Any] = {}


def _env(lenient: bool = False) -> Any:
    """Sandboxed Jinja; strict (a missing name is an error) except in a dry run, where earlier steps gave nothing real."""
    if lenient not in _ENVS:
        from jinja2 import ChainableUndefined, StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        _ENVS[lenient] = ImmutableSandboxedEnvironment(undefined=ChainableUndefined if lenient else StrictUndefined, autoescape=False)
    return _ENVS[lenient]


_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


def render(value: Any, variables: Mapping[str, Any], lenient: bool = False) -> Any:
    """Fill ``{{ ... }}`` templates in strings (deeply). A string that is one whole template keeps its type (a number stays a number)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            whole = _WHOLE.match(value)
            if whole and "{{" not in whole.group(1):
                found = _env(lenient).compile_expression(whole.group(1).strip(), undefined_to_none=lenient)(**variables)
                return found if not lenient or found is not None else value
            return _env(lenient).from_string(value).render(**variables)
        except Exception as err:
            raise TemplateFailed(f"template {value!r}: {type(err).__name__}: {err}") from None
    if isinstance(value, Mapping):
        return {k: render(v, variables, lenient) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables, lenient) for v in value]
    return value


class TemplateFailed(ValueError):
    """A template that does not render with the run's variables."""


def _template_syntax(value: Any) -> str:
    """Why a template string does not parse ('' when it does or is no template)."""
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return ""
    try:
        whole = _WHOLE.match(value)
        if whole and "{{" not in whole.group(1):
            _env().compile_expression(whole.group(1).strip())
        else:
            _env().parse(value)
    except Exception as err:
        return f"template does not parse: {err}"
    return ""


def _templates_in(value: Any, path: str, errors: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        why = _template_syntax(value)
        if why:
            errors.append((path, why))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _templates_in(v, f"{path}.{k}", errors)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _templates_in(v, f"{path}[{i}]", errors)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


# --------------------------------------------------------------------- shapes


def _seconds(min_s: float = 0.0, max_s: float = 366 * 86400) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if is_template(value):
            return value
        seconds = parse_duration(value)
        if not min_s <= seconds <= max_s:
            raise vol.Invalid(f"must be between {min_s:g} s and {max_s:g} s")
        return seconds

    return check


def _hhmm(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
        raise vol.Invalid("expected a time of day as HH:MM (24 h), such as 01:00 or 22:30")
    return value


THROTTLE = vol.Schema(
    {
        vol.Required("period", msg="throttle needs a period, such as 1h"): _seconds(1, 30 * 86400),
        vol.Optional("max", default=1): vol.All(int, vol.Range(min=1, max=1000)),
        vol.Optional("per", default="node"): vol.In(("node", "automation"), msg="per must be node or automation"),
    },
    extra=vol.PREVENT_EXTRA,
)

TOP = vol.Schema(
    {
        vol.Optional("id"): vol.All(str, vol.Match(AUTOMATION_ID_RE, msg="must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit")),
        vol.Required("name", msg="every automation needs a name"): vol.All(str, vol.Length(min=1, max=120)),
        vol.Optional("description", default=""): vol.All(str, vol.Length(max=2000)),
        vol.Optional("enabled", default=True): bool,
        vol.Optional("mode", default="single"): vol.In(MODES, msg=f"mode must be one of {', '.join(MODES)}"),
        vol.Optional("max", default=DEFAULT_MAX_RUNS): vol.All(int, vol.Range(min=1, max=100, msg="max must be between 1 and 100")),
        vol.Optional("throttle"): vol.Any(None, THROTTLE),
        vol.Optional("max_depth"): vol.All(int, vol.Range(min=0, max=10, msg="max_depth must be between 0 and 10")),
        vol.Optional("variables", default=dict): dict,
        vol.Required("triggers", msg="an automation needs at least one trigger (use kind: manual to run it only by hand)"): list,
        vol.Optional("conditions", default=list): list,
        vol.Required("steps", msg="an automation needs steps, what it does"): list,
        vol.Optional("blueprint"): dict,
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class Kinds:
    """The trigger and action kinds a definition may use: name -> voluptuous schema of its settings."""

    triggers: Mapping[str, Any]
    actions: Mapping[str, Any]


def validate(raw: Any, kinds: Kinds) -> dict[str, Any]:
    """The automation, normalised (defaults filled, durations in seconds, kinds in full); raises AutomationInvalid."""
    if not isinstance(raw, Mapping):
        raise AutomationInvalid([("(top level)", "an automation is a mapping with name, triggers and steps")])
    errors: list[tuple[str, str]] = []
    try:
        out = TOP(dict(raw))
    except vol.MultipleInvalid as err:
        raise AutomationInvalid([(_path(e.path), _allowed(e, TOP)) for e in err.errors]) from None
    except vol.Invalid as err:
        raise AutomationInvalid([(_path(err.path), err.msg)]) from None
    if not out["triggers"]:
        errors.append(("triggers", "an automation needs at least one trigger (use kind: manual to run it only by hand)"))
    for name in out["variables"]:
        if not VARIABLE_RE.match(str(name)):
            errors.append((f"variables.{name}", "a variable name is lower_snake_case"))
    out["triggers"] = [_trigger(t, f"triggers[{i}]", kinds, errors) for i, t in enumerate(out["triggers"])]
    out["conditions"] = [_condition(c, f"conditions[{i}]", errors, 0) for i, c in enumerate(out["conditions"])]
    counter = [0]
    out["steps"] = _steps(out["steps"], "steps", kinds, errors, 0, counter)
    if counter[0] > MAX_STEPS:
        errors.append(("steps", f"{counter[0]} steps; an automation may have at most {MAX_STEPS}"))
    if errors:
        raise AutomationInvalid(errors)
    return out


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _join(base: str, parts: Any) -> str:
    sub = _path(parts)
    if sub == "(top level)":
        return base
    return base + (sub if sub.startswith("[") else "." + sub)


def _keys_of(schema: Any) -> list[str]:
    """The field names a (possibly wrapped) mapping schema allows."""
    inner = getattr(schema, "schema", None)
    if isinstance(inner, dict):
        return [str(k) for k in inner]
    for part in getattr(schema, "validators", ()) or ((inner,) if inner is not None else ()):
        keys = _keys_of(part)
        if keys:
            return keys
    return []


def _mapping_of(schema: Any) -> dict[Any, Any] | None:
    inner = getattr(schema, "schema", None)
    if isinstance(inner, dict):
        return inner
    for part in getattr(schema, "validators", ()) or ((inner,) if inner is not None else ()):
        found = _mapping_of(part)
        if found is not None:
            return found
    return None


def _field_type(validator: Any) -> dict[str, Any]:
    if validator in (str,):
        return {"type": "string"}
    if validator in (int, float):
        return {"type": "number"}
    if validator is bool:
        return {"type": "boolean"}
    if validator in (dict,) or isinstance(validator, dict) or isinstance(getattr(validator, "schema", None), dict):
        return {"type": "mapping"}
    if validator in (list,) or isinstance(validator, list):
        return {"type": "list"}
    if isinstance(validator, vol.In):
        return {"type": "select", "options": [str(o) for o in validator.container]}
    for part in getattr(validator, "validators", ()) or ():
        found = _field_type(part)
        if found["type"] != "string" or part is str:
            return found
    return {"type": "string"}


def describe_fields(schema: Any) -> list[dict[str, Any]]:
    """The fields of a kind's settings schema for the dashboard's structured editor: name, required, type, options, default."""
    mapping = _mapping_of(schema) or {}
    out = []
    for key, validator in mapping.items():
        name = str(getattr(key, "schema", key))
        item: dict[str, Any] = {"name": name, "required": isinstance(key, vol.Required), **_field_type(validator)}
        default = getattr(key, "default", vol.UNDEFINED)
        if default is not vol.UNDEFINED:
            try:
                item["default"] = default() if callable(default) else default
            except Exception:
                pass
        description = getattr(key, "description", None)
        if description:
            item["description"] = description
        out.append(item)
    return out


def _allowed(err: vol.Invalid, schema: Any) -> str:
    if err.msg == "extra keys not allowed":
        keys = _keys_of(schema)
        return f"unknown field; allowed here: {', '.join(keys)}" if keys else "unknown field"
    return err.msg


def _check(schema: Any, value: Any, path: str, errors: list[tuple[str, str]]) -> Any:
    try:
        return schema(value)
    except vol.MultipleInvalid as err:
        for e in err.errors:
            errors.append((_join(path, e.path), _allowed(e, schema)))
    except vol.Invalid as err:
        errors.append((_join(path, err.path), _allowed(err, schema)))
    return value


def _trigger(raw: Any, path: str, kinds: Kinds, errors: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or "kind" not in raw:
        errors.append((path, f"a trigger is a mapping with a kind; kinds: {', '.join(sorted(kinds.triggers))}"))
        return {}
    kind = kind_name(raw["kind"])
    if kind not in kinds.triggers:
        errors.append((f"{path}.kind", f"unknown trigger kind {raw['kind']!r}; kinds: {', '.join(sorted(kinds.triggers))}"))
        return dict(raw)
    settings = {k: v for k, v in raw.items() if k not in ("kind", "id")}
    trigger_id = raw.get("id", "")
    if not isinstance(trigger_id, str) or len(trigger_id) > 64:
        errors.append((f"{path}.id", "a trigger id is a short string"))
    _templates_in(settings, path, errors)
    settings = _check(kinds.triggers[kind], settings, path, errors)
    return {"kind": kind, "id": trigger_id, **(settings if isinstance(settings, Mapping) else {})}


CONDITION_SHAPES: dict[str, Any] = {
    "node_online": vol.Any(True, vol.All(str, vol.Length(min=1, max=200)), msg="node_online is true (the trigger's node) or a node id"),
    "labels": vol.Schema({str: vol.Any(str, [str], msg="a label matches a value, a list of values, or ~regex")}),
    "metric": vol.Schema(
        {
            vol.Optional("node", default="{{ trigger.node_id }}"): str,
            vol.Required("series", msg="metric needs the series to read, such as linux_host.disk_used_percent[/]"): vol.All(str, vol.Length(min=3, max=300)),
            vol.Optional("above"): vol.Any(int, float, str),
            vol.Optional("below"): vol.Any(int, float, str),
        },
        extra=vol.PREVENT_EXTRA,
    ),
    "time": vol.Schema(
        {
            vol.Optional("after"): _hhmm,
            vol.Optional("before"): _hhmm,
            vol.Optional("weekdays"): [vol.In(WEEKDAYS, msg=f"weekdays are {', '.join(WEEKDAYS)}")],
        },
        extra=vol.PREVENT_EXTRA,
    ),
    "template": str,
    "not_in_maintenance": vol.Any(True, msg="not_in_maintenance is true"),
    "not_silenced": vol.Any(True, msg="not_silenced is true"),
}


def _condition(raw: Any, path: str, errors: list[tuple[str, str]], depth: int) -> dict[str, Any]:
    if depth > MAX_NESTING:
        errors.append((path, f"conditions nest at most {MAX_NESTING} deep"))
        return {}
    if not isinstance(raw, Mapping) or len(raw) != 1:
        errors.append((path, f"a condition is a mapping with one key, one of: {', '.join(CONDITION_KEYS)}"))
        return {}
    (key, value), = raw.items()
    if key not in CONDITION_KEYS:
        errors.append((path, f"unknown condition {key!r}; conditions: {', '.join(CONDITION_KEYS)}"))
        return {}
    if key in ("and", "or"):
        if not isinstance(value, list) or not value:
            errors.append((f"{path}.{key}", f"{key} takes a list of conditions"))
            return {key: []}
        return {key: [_condition(c, f"{path}.{key}[{i}]", errors, depth + 1) for i, c in enumerate(value)]}
    if key == "not":
        items = value if isinstance(value, list) else [value]
        return {key: [_condition(c, f"{path}.not[{i}]", errors, depth + 1) for i, c in enumerate(items)]}
    _templates_in(value, f"{path}.{key}", errors)
    checked = _check(CONDITION_SHAPES[key], value, f"{path}.{key}", errors)
    if key == "metric" and isinstance(checked, Mapping) and "above" not in checked and "below" not in checked:
        errors.append((f"{path}.metric", "a metric condition needs above, below or both"))
    if key == "time" and isinstance(checked, Mapping) and not checked:
        errors.append((f"{path}.time", "a time condition needs after, before or weekdays"))
    return {key: checked}


STEP_COMMON = ("id", "name", "continue_on_error")


def _steps(raw: Any, path: str, kinds: Kinds, errors: list[tuple[str, str]], depth: int, counter: list[int]) -> list[dict[str, Any]]:
    if depth > MAX_NESTING:
        errors.append((path, f"steps nest at most {MAX_NESTING} deep"))
        return []
    if not isinstance(raw, list):
        errors.append((path, "steps are a list"))
        return []
    if depth == 0 and not raw:
        errors.append((path, "an automation needs at least one step"))
    return [_step(s, f"{path}[{i}]", kinds, errors, depth, counter) for i, s in enumerate(raw)]


def _step(raw: Any, path: str, kinds: Kinds, errors: list[tuple[str, str]], depth: int, counter: list[int]) -> dict[str, Any]:
    counter[0] += 1
    if not isinstance(raw, Mapping):
        errors.append((path, "a step is a mapping"))
        return {}
    step = dict(raw)
    common = {k: step.pop(k) for k in STEP_COMMON if k in step}
    if "id" in common and (not isinstance(common["id"], str) or not VARIABLE_RE.match(common["id"])):
        errors.append((f"{path}.id", "a step id is lower_snake_case"))
    if "continue_on_error" in common and not isinstance(common["continue_on_error"], bool):
        errors.append((f"{path}.continue_on_error", "expected true or false"))
    if "action" in step:
        kind = kind_name(step.pop("action"))
        settings = step.pop("with", {})
        save_as = step.pop("save_as", None)
        if step:
            errors.append((f"{path}.{next(iter(step))}", "unknown field; an action step has action, with, save_as, id, name, continue_on_error"))
        if save_as is not None and (not isinstance(save_as, str) or not VARIABLE_RE.match(save_as)):
            errors.append((f"{path}.save_as", "save_as names a variable, lower_snake_case"))
        if kind not in kinds.actions:
            errors.append((f"{path}.action", f"unknown action {kind!r}; actions: {', '.join(sorted(kinds.actions))}"))
            return {**common, "action": kind, "with": settings}
        if not isinstance(settings, Mapping):
            errors.append((f"{path}.with", "with is a mapping of the action's settings"))
            return {**common, "action": kind, "with": {}}
        _templates_in(settings, f"{path}.with", errors)
        settings = _check(kinds.actions[kind], dict(settings), f"{path}.with", errors)
        out = {**common, "action": kind, "with": settings}
        if save_as:
            out["save_as"] = save_as
        return out
    keys = [k for k in step if k in CONTROL_STEPS]
    if len(keys) != 1:
        errors.append((path, f"a step is an action (action: KIND, with: ...) or one of {', '.join(CONTROL_STEPS)}"))
        return {**common, **step}
    key = keys[0]
    allowed_extra = {"if": {"then", "else"}, "choose": {"default"}}.get(key, set())
    for extra in step:
        if extra != key and extra not in allowed_extra:
            errors.append((f"{path}.{extra}", f"unknown field for a {key} step"))
    value = step[key]
    out: dict[str, Any] = dict(common)
    if key == "delay":
        out["delay"] = _check(_seconds(0, 30 * 86400), value, f"{path}.delay", errors)
    elif key == "stop":
        out["stop"] = value if isinstance(value, str) else ""
        if not isinstance(value, str):
            errors.append((f"{path}.stop", "stop takes the reason, a sentence"))
    elif key == "variables":
        if not isinstance(value, Mapping) or not value:
            errors.append((f"{path}.variables", "variables maps names to values or templates"))
            value = {}
        for name in value:
            if not VARIABLE_RE.match(str(name)) or name in ("trigger", "steps", "run", "automation"):
                errors.append((f"{path}.variables.{name}", "a variable name is lower_snake_case and not trigger, steps, run or automation"))
        _templates_in(value, f"{path}.variables", errors)
        out["variables"] = dict(value)
    elif key == "wait_for_approval":
        shape = vol.Schema(
            {
                vol.Optional("summary", default="Approve the next step of this automation?"): vol.All(str, vol.Length(min=1, max=500)),
                vol.Optional("timeout", default=DEFAULT_APPROVAL_SECONDS): _seconds(10, MAX_APPROVAL_SECONDS),
                vol.Optional("details", default=dict): dict,
                # A notification when the approval is asked for, linking to it (needs the hub's notifications).
                vol.Optional("notify"): vol.Schema(
                    {
                        vol.Optional("title", default="Approval needed"): vol.All(str, vol.Length(min=1, max=300)),
                        vol.Optional("body", default=""): vol.All(str, vol.Length(max=5000)),
                        vol.Optional("receivers"): vol.Any(None, [str]),
                    },
                    extra=vol.PREVENT_EXTRA,
                ),
            },
            extra=vol.PREVENT_EXTRA,
        )
        value = {} if value is True or value is None else value
        _templates_in(value, f"{path}.wait_for_approval", errors)
        out["wait_for_approval"] = _check(shape, value, f"{path}.wait_for_approval", errors)
    elif key == "wait_for_trigger":
        shape = vol.Schema(
            {
                vol.Required("trigger", msg="wait_for_trigger needs the trigger to wait for"): dict,
                vol.Required("timeout", msg="wait_for_trigger needs a timeout"): _seconds(1, 30 * 86400),
                vol.Optional("continue_on_timeout", default=False): bool,
            },
            extra=vol.PREVENT_EXTRA,
        )
        checked = _check(shape, value, f"{path}.wait_for_trigger", errors)
        if isinstance(checked, Mapping) and isinstance(checked.get("trigger"), Mapping):
            checked = {**checked, "trigger": _trigger(checked["trigger"], f"{path}.wait_for_trigger.trigger", kinds, errors)}
        out["wait_for_trigger"] = checked
    elif key == "if":
        conditions = value if isinstance(value, list) else [value]
        out["if"] = [_condition(c, f"{path}.if[{i}]", errors, 0) for i, c in enumerate(conditions)]
        out["then"] = _steps(step.get("then", []), f"{path}.then", kinds, errors, depth + 1, counter)
        out["else"] = _steps(step.get("else", []), f"{path}.else", kinds, errors, depth + 1, counter)
        if not out["then"] and not out["else"]:
            errors.append((f"{path}.then", "an if step needs then (or else) steps"))
    elif key == "choose":
        if not isinstance(value, list) or not value:
            errors.append((f"{path}.choose", "choose takes a list of {conditions, steps} options"))
            value = []
        options = []
        for i, option in enumerate(value):
            where = f"{path}.choose[{i}]"
            if not isinstance(option, Mapping) or set(option) - {"conditions", "steps"} or "steps" not in option:
                errors.append((where, "an option is {conditions: [...], steps: [...]}"))
                continue
            conds = option.get("conditions", [])
            conds = conds if isinstance(conds, list) else [conds]
            options.append(
                {
                    "conditions": [_condition(c, f"{where}.conditions[{j}]", errors, 0) for j, c in enumerate(conds)],
                    "steps": _steps(option["steps"], f"{where}.steps", kinds, errors, depth + 1, counter),
                }
            )
        out["choose"] = options
        out["default"] = _steps(step.get("default", []), f"{path}.default", kinds, errors, depth + 1, counter)
    return out


# ------------------------------------------------------------ text formats


def parse_text(text: str, fmt: str) -> Any:
    """A definition from YAML or TOML text; raises AutomationInvalid with the line of a syntax error."""
    if len(text) > 256 * 1024:
        raise AutomationInvalid([("(text)", "the text is over 256 KiB")])
    if fmt == "yaml":
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(text)"
            raise AutomationInvalid([(where, f"not valid YAML: {getattr(err, 'problem', None) or err}")]) from None
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise AutomationInvalid([("(text)", f"not valid TOML: {err}")]) from None
    if fmt == "json":
        try:
            return json.loads(text)
        except ValueError as err:
            raise AutomationInvalid([("(text)", f"not valid JSON: {err}")]) from None
    raise AutomationInvalid([("format", "format must be yaml, toml or json")])


def _plain(value: Any) -> Any:
    """Durations back to their short form where they are whole minutes or hours, for people reading the text."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_text(definition: Mapping[str, Any], fmt: str) -> str:
    data = _plain(dict(definition))
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps(data)
    return json.dumps(data, indent=2)


# -------------------------------------------------------------- conditions


def time_window(cond: Mapping[str, Any], now: float) -> bool:
    moment = datetime.fromtimestamp(now).astimezone()
    if "weekdays" in cond and WEEKDAYS[moment.weekday()] not in cond["weekdays"]:
        return False
    hhmm = moment.strftime("%H:%M")
    after, before = cond.get("after"), cond.get("before")
    if after and before:
        # 22:00-06:00 runs over midnight.
        return (after <= hhmm < before) if after <= before else (hhmm >= after or hhmm < before)
    if after:
        return hhmm >= after
    if before:
        return hhmm < before
    return True


def labels_match(wanted: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    for key, want in wanted.items():
        have = labels.get(key)
        if have is None:
            return False
        have = str(have)
        options = want if isinstance(want, list) else [want]
        if not any(re.fullmatch(o[1:], have) if o.startswith("~") else o == have for o in options):
            return False
    return True


def humanize(err: vol.Invalid) -> str:
    return humanize_invalid(err)
