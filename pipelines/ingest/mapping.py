"""Column mappings: YAML files that say how one source's columns become the frame contract."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pipelines.schema import FRAME_COLUMNS

BUILTIN_DIR = Path(__file__).parent / "mappings"
SCALAR_FIELDS = [c for c in FRAME_COLUMNS if c not in ("vin", "ts", "cell_mv", "probe_temp_c")]


class MappingError(ValueError):
    """A mapping file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class FieldSpec:
    """One scalar frame column: frame = source × scale + offset; `invalid` source values become null."""

    column: str
    scale: float = 1.0
    offset: float = 0.0
    invalid: tuple[float, ...] = ()


@dataclass(frozen=True)
class ListSpec:
    """Cell voltages or probe temperatures: one list column, or wide columns prefix1..prefixN."""

    list_column: str | None = None
    wide_prefix: str | None = None
    unit: str = "mV"  # cells: mV | V
    encoding: str = "celsius"  # probes: celsius | gbt_code | auto
    invalid: tuple[float, ...] = ()

    def wide_columns(self, names: list[str]) -> list[str]:
        """The wide columns present, in cell order (V_1, V_2, … V_10, not V_1, V_10, V_2)."""
        if not self.wide_prefix:
            return []
        pattern = re.compile(rf"^{re.escape(self.wide_prefix)}(\d+)$")
        numbered = [(int(m.group(1)), n) for n in names if (m := pattern.match(n))]
        return [n for _, n in sorted(numbered)]


@dataclass(frozen=True)
class Mapping:
    """How one source's files become frames."""

    name: str
    description: str
    vin_column: str | None
    vin_filename_pattern: str | None
    ts_column: str
    ts_format: str
    ts_timezone: str
    fields: dict[str, FieldSpec]
    cells: ListSpec
    probes: ListSpec
    path: Path | None = field(default=None, compare=False)

    def required_source_columns(self, names: list[str]) -> dict[str, str]:
        """Frame column -> what the file lacks for it, for the contract's required columns."""
        missing = {}
        if self.vin_column and self.vin_column not in names:
            missing["vin"] = f"column {self.vin_column!r}"
        if self.ts_column not in names:
            missing["ts"] = f"column {self.ts_column!r}"
        for name in ("pack_voltage_v", "pack_current_a", "soc_pct"):
            spec = self.fields.get(name)
            if spec is None or spec.column not in names:
                missing[name] = f"column {spec.column!r}" if spec else "no mapping entry"
        if not (self.cells.list_column in names or self.cells.wide_columns(names)):
            wanted = [f"column {self.cells.list_column!r}"] if self.cells.list_column else []
            wanted += [f"columns {self.cells.wide_prefix}1..n"] if self.cells.wide_prefix else []
            missing["cell_mv"] = " or ".join(wanted)
        return missing

    def source_columns(self, names: list[str]) -> set[str]:
        """Every column of the file this mapping reads."""
        used = {self.vin_column, self.ts_column, self.cells.list_column, self.probes.list_column}
        used |= {spec.column for spec in self.fields.values()}
        used |= set(self.cells.wide_columns(names)) | set(self.probes.wide_columns(names))
        return {u for u in used if u}


def _numbers(values: object, where: str) -> tuple[float, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise MappingError(f"{where}: 'invalid' must be a list of numbers")
    return tuple(float(v) for v in values)


def parse_mapping(doc: dict, path: Path | None = None) -> Mapping:
    """Build a Mapping from a parsed YAML document, with errors that name the offending key."""
    where = str(path or "mapping")
    try:
        vin, ts = doc.get("vin") or {}, doc["timestamp"]
        fields = {}
        for name, spec in (doc.get("fields") or {}).items():
            if name not in SCALAR_FIELDS:
                raise MappingError(f"{where}: fields.{name} is not a frame column (expected one of {SCALAR_FIELDS})")
            fields[name] = FieldSpec(
                column=str(spec["column"]),
                scale=float(spec.get("scale", 1.0)),
                offset=float(spec.get("offset", 0.0)),
                invalid=_numbers(spec.get("invalid"), f"{where}: fields.{name}"),
            )
        cells_doc, probes_doc = doc.get("cells") or {}, doc.get("probes") or {}
        cells = ListSpec(cells_doc.get("list_column"), cells_doc.get("wide_prefix"), unit=cells_doc.get("unit", "mV"),
                         invalid=_numbers(cells_doc.get("invalid"), f"{where}: cells"))
        probes = ListSpec(probes_doc.get("list_column"), probes_doc.get("wide_prefix"), encoding=probes_doc.get("encoding", "celsius"),
                          invalid=_numbers(probes_doc.get("invalid"), f"{where}: probes"))
        mapping = Mapping(
            name=str(doc["name"]),
            description=str(doc.get("description", "")),
            vin_column=vin.get("column"),
            vin_filename_pattern=vin.get("filename_pattern"),
            ts_column=str(ts["column"]),
            ts_format=str(ts.get("format", "iso8601")),
            ts_timezone=str(ts.get("timezone", "UTC")),
            fields=fields,
            cells=cells,
            probes=probes,
            path=path,
        )
    except KeyError as exc:
        raise MappingError(f"{where}: missing key {exc}") from exc
    if bool(mapping.vin_column) == bool(mapping.vin_filename_pattern):
        raise MappingError(f"{where}: vin needs exactly one of 'column' or 'filename_pattern'")
    if mapping.vin_filename_pattern and "(?P<vin>" not in mapping.vin_filename_pattern:
        raise MappingError(f"{where}: vin.filename_pattern needs a named group (?P<vin>...)")
    if cells.unit not in ("mV", "V"):
        raise MappingError(f"{where}: cells.unit must be mV or V, not {cells.unit!r}")
    if probes.encoding not in ("celsius", "gbt_code", "auto"):
        raise MappingError(f"{where}: probes.encoding must be celsius, gbt_code or auto, not {probes.encoding!r}")
    if not (cells.list_column or cells.wide_prefix):
        raise MappingError(f"{where}: cells needs list_column or wide_prefix")
    try:
        ZoneInfo(mapping.ts_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"{where}: timestamp.timezone {mapping.ts_timezone!r} is not a known time zone") from exc
    return mapping


def load_mapping(path: Path) -> Mapping:
    """Read one mapping YAML file."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise MappingError(f"{path}: expected a mapping document")
    return parse_mapping(doc, path)


def load_mappings(extra_dir: Path | None = None) -> dict[str, Mapping]:
    """Built-in mappings, overridden or extended by the YAML files in `extra_dir`."""
    paths = sorted(BUILTIN_DIR.glob("*.yaml"))
    if extra_dir and extra_dir.is_dir():
        paths += sorted(extra_dir.glob("*.yaml")) + sorted(extra_dir.glob("*.yml"))
    return {m.name: m for m in map(load_mapping, paths)}


def source_of(key: str) -> str:
    """The source a landing key belongs to: its first folder below landing/."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "landing" else ""
